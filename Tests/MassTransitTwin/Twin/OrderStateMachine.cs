// The order saga as a MassTransit state machine with the transition table of wire contract A3:
// Initial -> Submitted -> InventoryReserved -> Completed (MassTransit's Final, removed from the
// repository as our saga row is), or Failed with ReleaseStock as compensation, and RefundPayment for
// a payment accepted after the order failed.
// Instances live in MassTransit's in-memory saga repository (the EF Core repository package is not
// served here). The timeout rows are left out: scheduling needs Quartz or the delayed-message plugin.
using System.Security.Cryptography;
using System.Text;
using Contracts;
using MassTransit;

namespace Orders;

public class OrderState : SagaStateMachineInstance
{
    public Guid CorrelationId { get; set; }
    public string CurrentState { get; set; } = "";
    public string OrderId { get; set; } = "";
    public string CustomerNumber { get; set; } = "";
    public decimal TotalAmount { get; set; }
    public OrderItem[] Items { get; set; } = [];
    public string? Reason { get; set; }
    public string? TransactionId { get; set; }
    public bool StockReleased { get; set; }
    public bool PaymentRefunded { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime UpdatedAt { get; set; }
}

// Saga instances are keyed by a Guid; an order id that is one is used as it is, any other string
// gets a name-based Guid (SHA-1 of the id), so every event finds its instance without a query.
public static class OrderKey
{
    public static Guid For(string orderId)
    {
        if (Guid.TryParse(orderId, out var guid)) return guid;
        var hash = SHA1.HashData(Encoding.UTF8.GetBytes(orderId));
        var bytes = hash.AsSpan(0, 16).ToArray();
        bytes[7] = (byte)((bytes[7] & 0x0f) | 0x50);
        bytes[8] = (byte)((bytes[8] & 0x3f) | 0x80);
        return new Guid(bytes);
    }
}

// How long a ProcessPayment may wait to be taken: a payment is never taken after the order's deadline.
public record PaymentDeadline(TimeSpan TimeToLive);

public class OrderStateMachine : MassTransitStateMachine<OrderState>
{
    public const string CardToken = "tok_test_visa";

    public State Submitted { get; private set; } = null!;
    public State InventoryReserved { get; private set; } = null!;
    public State Failed { get; private set; } = null!;

    public Event<OrderSubmitted> OrderSubmitted { get; private set; } = null!;
    public Event<StockReserved> StockReserved { get; private set; } = null!;
    public Event<StockShortage> StockShortage { get; private set; } = null!;
    public Event<PaymentAccepted> PaymentAccepted { get; private set; } = null!;
    public Event<PaymentFailed> PaymentFailed { get; private set; } = null!;
    public Event<StockReleased> StockReleased { get; private set; } = null!;
    public Event<PaymentRefunded> PaymentRefunded { get; private set; } = null!;
    public Event<Fault<CheckInventory>> CheckInventoryFaulted { get; private set; } = null!;
    public Event<Fault<ProcessPayment>> ProcessPaymentFaulted { get; private set; } = null!;

    public OrderStateMachine(OrderBook book, PaymentDeadline deadline)
    {
        InstanceState(x => x.CurrentState);

        Event(() => OrderSubmitted, x => x.CorrelateById(c => OrderKey.For(c.Message.OrderId)));
        Event(() => StockReserved, x => x.CorrelateById(c => OrderKey.For(c.Message.OrderId)));
        Event(() => StockShortage, x => x.CorrelateById(c => OrderKey.For(c.Message.OrderId)));
        Event(() => PaymentAccepted, x => x.CorrelateById(c => OrderKey.For(c.Message.OrderId)));
        Event(() => PaymentFailed, x => x.CorrelateById(c => OrderKey.For(c.Message.OrderId)));
        Event(() => StockReleased, x => x.CorrelateById(c => OrderKey.For(c.Message.OrderId)));
        Event(() => PaymentRefunded, x => x.CorrelateById(c => OrderKey.For(c.Message.OrderId)));
        Event(() => CheckInventoryFaulted, x => x.CorrelateById(c => OrderKey.For(c.Message.Message.OrderId)));
        Event(() => ProcessPaymentFaulted, x => x.CorrelateById(c => OrderKey.For(c.Message.Message.OrderId)));

        Initially(
            When(OrderSubmitted)
                .Then(c =>
                {
                    c.Saga.OrderId = c.Message.OrderId;
                    c.Saga.CustomerNumber = c.Message.CustomerNumber;
                    c.Saga.TotalAmount = c.Message.TotalAmount;
                    c.Saga.Items = c.Message.Items ?? [];
                    c.Saga.CreatedAt = DateTime.UtcNow;
                })
                .Publish(c => new CheckInventory(c.Saga.OrderId, c.Saga.Items))
                .TransitionTo(Submitted));

        During(Submitted,
            When(StockReserved)
                .Publish(c => new ProcessPayment(c.Saga.OrderId, c.Saga.TotalAmount, CardToken),
                    p => p.TimeToLive = deadline.TimeToLive)
                .TransitionTo(InventoryReserved),
            When(StockShortage)
                .Then(c => c.Saga.Reason = c.Message.Reason)
                .Publish(c => new OrderFailed(c.Saga.OrderId, c.Saga.Reason!))
                .TransitionTo(Failed),
            When(CheckInventoryFaulted)
                .Then(c => c.Saga.Reason = "Inventory check faulted: " + FirstMessage(c.Message))
                .Publish(c => new OrderFailed(c.Saga.OrderId, c.Saga.Reason!))
                .TransitionTo(Failed),
            Ignore(OrderSubmitted));

        During(InventoryReserved,
            When(PaymentAccepted)
                .Then(c => c.Saga.TransactionId = c.Message.TransactionId)
                .Publish(c => new OrderCompleted(c.Saga.OrderId))
                .Finalize(),
            When(PaymentFailed)
                .Then(c => c.Saga.Reason = c.Message.Reason)
                .Publish(c => new ReleaseStock(c.Saga.OrderId, c.Saga.Reason!))
                .Publish(c => new OrderFailed(c.Saga.OrderId, c.Saga.Reason!))
                .TransitionTo(Failed),
            When(ProcessPaymentFaulted)
                .Then(c => c.Saga.Reason = "Payment faulted: " + FirstMessage(c.Message))
                .Publish(c => new ReleaseStock(c.Saga.OrderId, c.Saga.Reason!))
                .Publish(c => new OrderFailed(c.Saga.OrderId, c.Saga.Reason!))
                .TransitionTo(Failed),
            Ignore(OrderSubmitted),
            Ignore(StockReserved));

        During(Failed,
            When(StockReserved)
                .Then(c => c.Saga.StockReleased = false)
                .Publish(c => new ReleaseStock(c.Saga.OrderId, "Stock reserved after the order failed")),
            When(StockReleased)
                .Then(c => c.Saga.StockReleased = true),
            When(PaymentAccepted)
                .Then(c => c.Saga.TransactionId = c.Message.TransactionId)
                .Publish(c => new RefundPayment(c.Saga.OrderId, c.Message.TransactionId, c.Saga.TotalAmount,
                    "Payment accepted after the order failed")),
            When(PaymentRefunded)
                .Then(c => c.Saga.PaymentRefunded = true),
            Ignore(OrderSubmitted),
            Ignore(StockShortage),
            Ignore(PaymentFailed),
            Ignore(CheckInventoryFaulted),
            Ignore(ProcessPaymentFaulted));

        // The order's outcome stays readable through GET /order/{id} once the instance is finalized.
        WhenEnterAny(x => x.Then(c =>
        {
            c.Saga.UpdatedAt = DateTime.UtcNow;
            book.Record(c.Saga);
        }));

        SetCompletedWhenFinalized();
    }

    static string FirstMessage<T>(Fault<T> fault) =>
        fault.Exceptions is { Length: > 0 } exceptions ? exceptions[0].Message : "unknown error";
}
