// The messages of wire contract A1 as C# types in namespace Contracts, so that MassTransit names them
// urn:message:Contracts:<Name> and publishes them to exchange Contracts:<Name>. Order ids are strings,
// money is decimal (MassTransit writes it as a JSON string).
namespace Contracts;

public record OrderItem(string Sku, int Quantity, decimal UnitPrice);

public record OrderSubmitted(string OrderId, DateTime Timestamp, string CustomerNumber, decimal TotalAmount,
                             OrderItem[]? Items);

public record CheckInventory(string OrderId, OrderItem[]? Items);

public record StockReserved(string OrderId);

public record StockShortage(string OrderId, string Reason);

public record ProcessPayment(string OrderId, decimal Amount, string CardNumber);

public record PaymentAccepted(string OrderId, string? TransactionId);

public record PaymentFailed(string OrderId, string Reason);

public record OrderCompleted(string OrderId);

public record OrderFailed(string OrderId, string Reason);

public record ReleaseStock(string OrderId, string Reason);

public record StockReleased(string OrderId);

public record RefundPayment(string OrderId, string? TransactionId, decimal Amount, string Reason);

public record PaymentRefunded(string OrderId, string? TransactionId);
