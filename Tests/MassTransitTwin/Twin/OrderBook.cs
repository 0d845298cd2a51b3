// What GET /order/{id} reads: each order's latest state, written by POST /order ("Accepted") and by
// the saga on every transition, and kept after the saga instance is finalized, as OrderService keeps
// its orders table.
using System.Collections.Concurrent;
using Contracts;

namespace Orders;

public record OrderView(string OrderId, string Status, string? Reason, string CustomerNumber, decimal TotalAmount,
                        OrderItem[] Items, string? TransactionId, DateTime CreatedAt, DateTime UpdatedAt);

public class OrderBook
{
    readonly ConcurrentDictionary<string, OrderView> orders = new();

    // False when an order with this id exists already (a repeated POST starts nothing).
    public bool TryAccept(OrderSubmitted order)
    {
        var now = DateTime.UtcNow;
        return orders.TryAdd(order.OrderId, new OrderView(order.OrderId, "Accepted", null, order.CustomerNumber,
            order.TotalAmount, order.Items ?? [], null, now, now));
    }

    public void Record(OrderState saga)
    {
        // MassTransit's Final is the Completed row of our table.
        var status = saga.CurrentState == "Final" ? "Completed" : saga.CurrentState;
        var view = new OrderView(saga.OrderId, status, saga.Reason, saga.CustomerNumber, saga.TotalAmount, saga.Items,
            saga.TransactionId, saga.CreatedAt, saga.UpdatedAt);
        orders.AddOrUpdate(saga.OrderId, view, (_, earlier) => view with { CreatedAt = earlier.CreatedAt });
    }

    public OrderView? Find(string orderId) => orders.TryGetValue(orderId, out var view) ? view : null;
}
