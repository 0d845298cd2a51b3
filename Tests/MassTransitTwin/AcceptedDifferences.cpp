// The one list of the ways our wire behaviour may differ from MassTransit's (the twin's), each with
// its reason. The differential test fails on any difference not listed here, and on an entry here
// that no longer matches a difference. A raw JSON body is compared as the envelope is, so its fault's
// fields lie one level up ("envelope.exceptions" instead of "envelope.message.exceptions").
#include "MassTransitTwin/WireDiff.h"

namespace twin_test {

const std::vector<AcceptedDifference>& AcceptedDifferences() {
    static const std::vector<AcceptedDifference> kAccepted = {
        {"message * header.x-dotnet-pub-seq-no",
         "RabbitMQ.Client 7 stamps every publish with its own publisher-confirm sequence number; it is that "
         "client's bookkeeping, which neither MassTransit nor the broker reads"},
        {"topology * Contracts:OrderTimeoutExpired*",
         "our saga schedules its own timeout and consumes OrderTimeoutExpired; the twin has no timeout, because "
         "MassTransit 8.5 schedules only through Quartz or the delayed-message plugin, neither of which is here"},
        {"message * header.MT-Fault-ExceptionType.value",
         "the name of the exception type that was thrown: ours are C++ types written the .NET way "
         "(payment_service::PaymentGatewayUnavailable as payment_service.PaymentGatewayUnavailable, our envelope "
         "reader's messaging.EnvelopeError), MassTransit's are .NET types; a type name cannot be both"},
        {"message MassTransit:Fault--* envelope*exceptions[0].exceptionType",
         "as MT-Fault-ExceptionType: each side names the type it threw"},
        {"message *_error header.MT-Fault-Message.value",
         "for a body that is not JSON the message is the JSON reader's own text: System.Text.Json's and ours "
         "describe the same error in different words"},
        {"message MassTransit:ReceiveFault envelope*exceptions[0].message",
         "MassTransit's wording of its deserialization failure is its own text; ours says the same in our words"},
        {"message MassTransit:ReceiveFault envelope*exceptions[0].innerException.*",
         "the cause under the SerializationException is the JSON reader's: System.Text.Json nests two "
         "exceptions of its own there, our reader throws one (messaging.EnvelopeError) with its own words"},
    };
    return kAccepted;
}

}  // namespace twin_test
