// `MassTransitTwin request bus-endpoint|reply-to <kind>:<orderId> ...`: MassTransit's own request
// client asks the inventory and payment services (kind check-inventory or process-payment), through the
// bus's temporary endpoint or through RabbitMQ's direct reply-to, and prints one JSON line per request:
// {"request", "orderId", "answer", "reason"}; a fault's answer is "Fault", a timeout's "Timeout".
using System.Text.Json.Nodes;
using Contracts;
using MassTransit;

namespace Twin;

public static class Requester
{
    public static async Task<int> Run(string[] args, IConfiguration configuration)
    {
        if (args.Length < 2 || args[0] is not ("bus-endpoint" or "reply-to"))
        {
            Console.Error.WriteLine("usage: MassTransitTwin request bus-endpoint|reply-to <kind>:<orderId> ...");
            return 2;
        }
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
            cfg.Host(configuration.GetValue("RabbitMQ:Host", "localhost"),
                configuration.GetValue<ushort>("RabbitMQ:Port", 5672), configuration.GetValue("RabbitMQ:VirtualHost", "/"),
                h =>
                {
                    h.Username(configuration.GetValue("RabbitMQ:Username", "guest"));
                    h.Password(configuration.GetValue("RabbitMQ:Password", "guest"));
                }));
        await bus.StartAsync();
        try
        {
            var timeout = RequestTimeout.After(s: 30);
            var factory = args[0] == "reply-to" ? bus.CreateReplyToClientFactory(timeout) : bus.CreateClientFactory(timeout);
            foreach (var request in args.Skip(1))
            {
                var (kind, orderId) = (request.Split(':')[0], request.Split(':')[1]);
                var line = new JsonObject { ["request"] = kind, ["orderId"] = orderId };
                try
                {
                    (line["answer"], line["reason"]) = kind switch
                    {
                        "check-inventory" => await CheckInventory(factory, orderId),
                        "process-payment" => await ProcessPayment(factory, orderId),
                        _ => throw new ArgumentException($"unknown request kind {kind}"),
                    };
                }
                catch (RequestFaultException e)
                {
                    (line["answer"], line["reason"]) = ("Fault", e.Fault?.Exceptions.FirstOrDefault()?.Message);
                }
                catch (RequestTimeoutException)
                {
                    line["answer"] = "Timeout";
                }
                Console.WriteLine(line.ToJsonString());
            }
        }
        finally
        {
            await bus.StopAsync();
        }
        return 0;
    }

    static async Task<(string, string?)> CheckInventory(IClientFactory factory, string orderId)
    {
        var client = factory.CreateRequestClient<CheckInventory>(new Uri("exchange:inventory-service"));
        var response = await client.GetResponse<StockReserved, StockShortage>(
            new CheckInventory(orderId, [new OrderItem("SKU-1", 1, 9.99m)]));
        if (response.Is(out Response<StockShortage>? shortage)) return ("StockShortage", shortage.Message.Reason);
        return ("StockReserved", null);
    }

    static async Task<(string, string?)> ProcessPayment(IClientFactory factory, string orderId)
    {
        var client = factory.CreateRequestClient<ProcessPayment>(new Uri("exchange:payment-service"));
        var response = await client.GetResponse<PaymentAccepted, PaymentFailed>(
            new ProcessPayment(orderId, 9.99m, "4111111111111111"));
        if (response.Is(out Response<PaymentFailed>? failed)) return ("PaymentFailed", failed.Message.Reason);
        return ("PaymentAccepted", null);
    }
}
