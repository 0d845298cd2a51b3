// POST /order, GET /order/{id} and GET /health with OrderService's request and response shapes
// (README "Using it"): the same validation rules, 202 with Location, JSON errors {error, message, field}.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Contracts;
using MassTransit;

namespace Orders;

public static partial class OrderApi
{
    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex OrderIdPattern();

    public static void Map(WebApplication app)
    {
        app.MapPost("/order", PostOrder);
        app.MapGet("/order/{orderId}", GetOrder);
        app.MapGet("/health", async (IBusControl bus) =>
        {
            var healthy = bus.CheckHealth().Status == BusHealthStatus.Healthy;
            var body = new JsonObject { ["status"] = healthy ? "ok" : "degraded",
                                        ["broker"] = healthy ? "connected" : "disconnected" };
            return await Task.FromResult<IResult>(new JsonAnswer(healthy ? 200 : 503, body));
        });
    }

    static IResult Error(int status, string error, string message, string? field = null)
    {
        var body = new JsonObject { ["error"] = error, ["message"] = message };
        if (field != null) body["field"] = field;
        return new JsonAnswer(status, body);
    }

    static JsonElement? Field(JsonElement body, string name)
    {
        foreach (var property in body.EnumerateObject())
            if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase)) return property.Value;
        return null;
    }

    static decimal? Money(JsonElement? value)
    {
        if (value is not { } v) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out var number)) return number;
        if (v.ValueKind == JsonValueKind.String &&
            decimal.TryParse(v.GetString(), NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingSign,
                CultureInfo.InvariantCulture, out var parsed)) return parsed;
        return null;
    }

    static int Scale(decimal value) => (decimal.GetBits(value)[3] >> 16) & 0xff;

    static async Task<IResult> PostOrder(HttpRequest request, OrderBook book, IPublishEndpoint publish)
    {
        if (request.ContentType is not { } type || !type.Split(';')[0].Trim().EndsWith("json",
                StringComparison.OrdinalIgnoreCase))
            return Error(415, "unsupported_media_type", "send the order as application/json", "Content-Type");
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(request.Body);
        }
        catch (JsonException)
        {
            return Error(400, "malformed_body", "the body is not valid JSON");
        }
        using var _ = document;
        var body = document.RootElement;
        if (body.ValueKind != JsonValueKind.Object)
            return Error(400, "malformed_body", "the body must be a JSON object");
        string[] known = ["orderId", "customerNumber", "totalAmount", "items"];
        foreach (var property in body.EnumerateObject())
            if (!known.Any(k => string.Equals(k, property.Name, StringComparison.OrdinalIgnoreCase)))
                return Error(400, "invalid_field", property.Name +
                    " is not a field of an order (expected orderId, customerNumber, totalAmount, items)", property.Name);

        string orderId;
        if (Field(body, "orderId") is { } id)
        {
            if (id.ValueKind != JsonValueKind.String || !OrderIdPattern().IsMatch(id.GetString()!))
                return Error(400, "invalid_field", "orderId must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
                    "orderId");
            orderId = id.GetString()!;
        }
        else
        {
            orderId = Guid.NewGuid().ToString();
        }
        if (Field(body, "customerNumber") is not { ValueKind: JsonValueKind.String } customer ||
            customer.GetString() is not { Length: >= 1 and <= 256 } customerNumber)
            return Error(400, "invalid_field", "customerNumber must be a string of 1-256 characters", "customerNumber");
        if (Money(Field(body, "totalAmount")) is not { } total || total <= 0 || Scale(total) > 2)
            return Error(400, "invalid_field",
                "totalAmount must be a positive amount with at most 2 decimals, e.g. 149.97 or \"149.97\"",
                "totalAmount");
        var items = new List<OrderItem>();
        if (Field(body, "items") is { } array)
        {
            if (array.ValueKind != JsonValueKind.Array) return Error(400, "invalid_field", "items must be an array", "items");
            var index = 0;
            foreach (var item in array.EnumerateArray())
            {
                var where = $"items[{index++}]";
                if (item.ValueKind != JsonValueKind.Object) return Error(400, "invalid_field", where + " must be an object", where);
                if (Field(item, "sku") is not { ValueKind: JsonValueKind.String } sku ||
                    sku.GetString() is not { Length: >= 1 and <= 64 } skuText)
                    return Error(400, "invalid_field", where + ".sku must be a string of 1-64 characters", where + ".sku");
                if (Field(item, "quantity") is not { ValueKind: JsonValueKind.Number } quantity ||
                    !quantity.TryGetInt32(out var count) || count < 1 || count > 1000000)
                    return Error(400, "invalid_field", where + ".quantity must be an integer from 1 to 1000000",
                        where + ".quantity");
                if (Money(Field(item, "unitPrice")) is not { } price || price < 0 || Scale(price) > 2)
                    return Error(400, "invalid_field", where + ".unitPrice must be a non-negative amount with at most 2 decimals",
                        where + ".unitPrice");
                items.Add(new OrderItem(skuText, count, price));
            }
        }

        var submitted = new OrderSubmitted(orderId, DateTime.UtcNow, customerNumber, total, items.ToArray());
        if (book.TryAccept(submitted))
            await publish.Publish(submitted);
        var answer = new JsonObject { ["orderId"] = orderId };
        return new JsonAnswer(202, answer, "/order/" + orderId);
    }

    static IResult GetOrder(string orderId, OrderBook book)
    {
        if (!OrderIdPattern().IsMatch(orderId))
            return Error(400, "invalid_field", "orderId must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'", "orderId");
        if (book.Find(orderId) is not { } order)
            return Error(404, "not_found", "no order with id " + orderId, "orderId");
        var items = new JsonArray();
        foreach (var item in order.Items)
            items.Add(new JsonObject { ["sku"] = item.Sku, ["quantity"] = item.Quantity,
                                       ["unitPrice"] = item.UnitPrice.ToString(CultureInfo.InvariantCulture) });
        var body = new JsonObject
        {
            ["orderId"] = order.OrderId,
            ["status"] = order.Status,
            ["reason"] = order.Reason,
            ["customerNumber"] = order.CustomerNumber,
            ["totalAmount"] = order.TotalAmount.ToString(CultureInfo.InvariantCulture),
            ["items"] = items,
            ["transactionId"] = order.TransactionId,
            ["createdAt"] = order.CreatedAt.ToString("O", CultureInfo.InvariantCulture),
            ["updatedAt"] = order.UpdatedAt.ToString("O", CultureInfo.InvariantCulture),
        };
        return new JsonAnswer(200, body);
    }

    // A JSON answer written with its Content-Length (as OrderService answers; Kestrel would otherwise
    // send it chunked), and a Location header when one is given.
    sealed class JsonAnswer(int status, JsonNode body, string? location = null) : IResult
    {
        public Task ExecuteAsync(HttpContext context)
        {
            var bytes = JsonSerializer.SerializeToUtf8Bytes(body);
            var response = context.Response;
            response.StatusCode = status;
            response.ContentType = "application/json";
            response.ContentLength = bytes.Length;
            if (location != null) response.Headers.Location = location;
            return response.Body.WriteAsync(bytes).AsTask();
        }
    }
}
