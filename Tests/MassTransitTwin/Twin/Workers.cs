// The inventory and payment consumers with the seed's simulation rules, keyed on the order id's last
// character: 0 out of stock, 1 card declined, 2 the gateway throws on every attempt.
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
                return context.Publish(new StockShortage(orderId, "Out of stock"));
            return context.Publish(new StockReserved(orderId));
        }
    }

    public class ReleaseStockConsumer : IConsumer<ReleaseStock>
    {
        public Task Consume(ConsumeContext<ReleaseStock> context) =>
            context.Publish(new StockReleased(context.Message.OrderId));
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
            if (orderId.EndsWith('2'))
                throw new PaymentGatewayUnavailable("Payment gateway unavailable");
            if (orderId.EndsWith('1'))
                return context.Publish(new PaymentFailed(orderId, "Credit card limit exceeded"));
            return context.Publish(new PaymentAccepted(orderId, NewId.NextGuid().ToString()));
        }
    }
}
