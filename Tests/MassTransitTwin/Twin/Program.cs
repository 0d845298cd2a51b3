// The MassTransit twin: `MassTransitTwin order|inventory|payment ...` runs the named services on one
// MassTransit bus in this process (each alone in its own process for a mixed deployment);
// `MassTransitTwin request ...` sends requests with MassTransit's request client (Requester.cs). The broker
// and the knobs come from the environment with OrderService's names: RabbitMQ__Host, RabbitMQ__Port,
// RabbitMQ__VirtualHost, RabbitMQ__Username, RabbitMQ__Password, Http__Port, Endpoint__PrefetchCount,
// Endpoint__QueueType ("Quorum" calls SetQuorumQueue on every endpoint),
// Endpoint__QuorumInitialGroupSize (its replication factor; 0 leaves it to the broker) and
// Endpoint__Serializer ("RawJson" calls UseRawJsonSerializer on every endpoint); Saga__TimeoutMs (the
// time to live of ProcessPayment); Metrics__Port (MassTransit's meter served in Prometheus' text format
// at http://127.0.0.1:{port}/metrics by OpenTelemetry's exporter, as a shop scrapes it).
using System.Diagnostics;
using Contracts;
using MassTransit;
using OpenTelemetry.Metrics;
using Orders;

if (args.Length > 0 && args[0] == "request")
    return await Twin.Requester.Run(args[1..], new ConfigurationBuilder().AddEnvironmentVariables().Build());

var services = args.Length == 0 ? ["order", "inventory", "payment"] : args.Select(a => a.ToLowerInvariant()).ToArray();
var unknown = services.Except(["order", "inventory", "payment"]).ToArray();
if (unknown.Length > 0)
{
    Console.Error.WriteLine($"unknown service(s) {string.Join(", ", unknown)}; usage: MassTransitTwin [order] [inventory] [payment]");
    return 2;
}
var runOrders = services.Contains("order");
var runInventory = services.Contains("inventory");
var runPayment = services.Contains("payment");

// As in a shop that exports traces (OpenTelemetry's AddSource("MassTransit")): with a listener,
// ASP.NET Core starts an activity from a request's traceparent and MassTransit starts one per send
// and receive, writing MT-Activity-Id and following it from message to message.
ActivitySource.AddActivityListener(new ActivityListener
{
    ShouldListenTo = source => source.Name is "MassTransit" or "Microsoft.AspNetCore",
    Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
});

var builder = WebApplication.CreateSlimBuilder(args);
var configuration = builder.Configuration;
var httpPort = configuration.GetValue("Http:Port", 5000);
builder.WebHost.UseUrls(runOrders ? $"http://127.0.0.1:{httpPort}" : "http://127.0.0.1:0");
builder.Logging.SetMinimumLevel(Enum.Parse<LogLevel>(configuration.GetValue("Logging:Level", "Warning")!, true));
builder.Services.AddSingleton<OrderBook>();
var metricsPort = configuration.GetValue("Metrics:Port", 0);
if (metricsPort > 0)
    builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter("MassTransit")
        .AddPrometheusHttpListener(o => { o.Host = "127.0.0.1"; o.Port = metricsPort; }));
// How long a ProcessPayment lives (its time to live): the order's deadline, as ours sets it from Saga.TimeoutMs.
builder.Services.AddSingleton(new PaymentDeadline(TimeSpan.FromMilliseconds(configuration.GetValue("Saga:TimeoutMs", 300000))));

builder.Services.AddMassTransit(x =>
{
    if (runOrders) x.AddSagaStateMachine<OrderStateMachine, OrderState>().InMemoryRepository();
    if (runInventory)
    {
        x.AddConsumer<Inventory.CheckInventoryConsumer>();
        x.AddConsumer<Inventory.ReleaseStockConsumer>();
    }
    if (runPayment)
    {
        x.AddConsumer<Payment.ProcessPaymentConsumer>();
        x.AddConsumer<Payment.RefundPaymentConsumer>();
    }

    x.UsingRabbitMq((context, cfg) =>
    {
        cfg.Host(configuration.GetValue("RabbitMQ:Host", "localhost"), configuration.GetValue<ushort>("RabbitMQ:Port", 5672),
            configuration.GetValue("RabbitMQ:VirtualHost", "/"), h =>
            {
                h.Username(configuration.GetValue("RabbitMQ:Username", "guest"));
                h.Password(configuration.GetValue("RabbitMQ:Password", "guest"));
            });
        var prefetch = configuration.GetValue("Endpoint:PrefetchCount", 16);
        var quorum = string.Equals(configuration.GetValue("Endpoint:QueueType", "Classic"), "Quorum", StringComparison.OrdinalIgnoreCase);
        var groupSize = configuration.GetValue("Endpoint:QuorumInitialGroupSize", 0);
        var rawJson = string.Equals(configuration.GetValue("Endpoint:Serializer", "Envelope"), "RawJson", StringComparison.OrdinalIgnoreCase);
        void EndpointOptions(IRabbitMqReceiveEndpointConfigurator e)
        {
            if (quorum) e.SetQuorumQueue(groupSize > 0 ? groupSize : null);
            if (rawJson) e.UseRawJsonSerializer();
        }

        if (runOrders)
            cfg.ReceiveEndpoint("order-service", e =>
            {
                EndpointOptions(e);
                e.PrefetchCount = prefetch;
                e.UseMessageRetry(r => r.Interval(3, TimeSpan.FromMilliseconds(500)));
                e.UseInMemoryOutbox(context);
                e.ConfigureSaga<OrderState>(context);
            });
        if (runInventory)
            cfg.ReceiveEndpoint("inventory-service", e =>
            {
                EndpointOptions(e);
                e.PrefetchCount = prefetch;
                e.UseMessageRetry(r => r.Interval(3, TimeSpan.FromMilliseconds(500)));
                e.ConfigureConsumer<Inventory.CheckInventoryConsumer>(context);
                e.ConfigureConsumer<Inventory.ReleaseStockConsumer>(context);
            });
        if (runPayment)
            cfg.ReceiveEndpoint("payment-service", e =>
            {
                EndpointOptions(e);
                e.PrefetchCount = prefetch;
                e.UseMessageRetry(r => r.Interval(3, TimeSpan.FromMilliseconds(500)));
                e.ConfigureConsumer<Payment.ProcessPaymentConsumer>(context);
                e.ConfigureConsumer<Payment.RefundPaymentConsumer>(context);
            });
    });
});

var app = builder.Build();
if (runOrders) OrderApi.Map(app);
await app.RunAsync();
return 0;
