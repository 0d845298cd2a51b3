// The inventory and payment consumers with the seed's simulation rules, keyed on the order id's last
// character: 0 out of stock, 1 card declined, 2 the gateway throws on every attempt. Like ours, they
// answer with RespondAsync: to a request client's responseAddress, else published for the saga. A
// ProcessPayment past its expiration time (the order's deadline) is declined; RefundPayment is
// answered with PaymentRefunded (the twin keeps no ledger).
using Contracts;
using MassTransit;

namespace Inventory
{
    public class CheckInventoryConsumer : IConsumer<CheckInventory>
    {
        public Task Consume(ConsumeContext<CheckInventory> context)
        {
            var orderId = context.Message.OrderId;
            if (orderId.EndsWith('0'))
                return context.RespondAsync(new StockShortage(orderId, "Out of stock"));
            return context.RespondAsync(new StockReserved(orderId));
        }
    }

    public class ReleaseStockConsumer : IConsumer<ReleaseStock>
    {
        public Task Consume(ConsumeContext<ReleaseStock> context) =>
            context.RespondAsync(new StockReleased(context.Message.OrderId));
    }
}

namespace Payment
{
    public class PaymentGatewayUnavailable(string message) : Exception(message);

    public class ProcessPaymentConsumer : IConsumer<ProcessPayment>
    {
        public Task Consume(ConsumeContext<ProcessPayment> context)
        {
            var orderId = context.Message.OrderId;
            if (context.ExpirationTime is { } deadline && DateTime.UtcNow >= deadline)
                return context.RespondAsync(new PaymentFailed(orderId, "Payment deadline passed"));
            if (orderId.EndsWith('2'))
                throw new PaymentGatewayUnavailable("Payment gateway unavailable");
            if (orderId.EndsWith('1'))
                return context.RespondAsync(new PaymentFailed(orderId, "Credit card limit exceeded"));
            return context.RespondAsync(new PaymentAccepted(orderId, NewId.NextGuid().ToString()));
        }
    }

    public class RefundPaymentConsumer : IConsumer<RefundPayment>
    {
        public Task Consume(ConsumeContext<RefundPayment> context) =>
            context.RespondAsync(new PaymentRefunded(context.Message.OrderId, context.Message.TransactionId));
    }
}
