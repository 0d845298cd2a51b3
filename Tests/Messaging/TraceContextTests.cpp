// W3C trace context as MassTransit carries it: traceparent parsing by the W3C rules, child spans,
// the span a consumer works in (from MT-Activity-Id), and the baggage header.
#include <doctest/doctest.h>

#include "Wire/TraceContext.h"

using namespace messaging;
using contracts::Json;

TEST_SUITE("TraceContext") {
    TEST_CASE("A traceparent is read by the W3C rules") {
        const auto span = TraceContext::Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        REQUIRE(span);
        CHECK(span->trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
        CHECK(span->span_id == "00f067aa0ba902b7");
        CHECK(span->flags == 1);
        CHECK(span->TraceParent() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        CHECK(TraceContext::Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")->flags == 0);
        // A later version may add fields after its own '-'.
        CHECK(TraceContext::Parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"));
        for (const char* refused :
             {"",
              "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",       // no flags
              "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // version 00 has no more
              "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",   // not after a '-'
              "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff
              "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper case
              "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace id
              "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero span id
              "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // separator
              "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"})   // not hex
            CHECK_FALSE_MESSAGE(TraceContext::Parse(refused), refused);
    }

    TEST_CASE("A child span keeps the trace - the flags and the baggage - with a new span id") {
        TraceContext root = TraceContext::NewRoot();
        CHECK(TraceContext::Parse(root.TraceParent()));
        root.baggage = {{"tenant", "acme"}};
        const TraceContext child = root.NewSpan();
        CHECK(child.trace_id == root.trace_id);
        CHECK(child.span_id != root.span_id);
        CHECK(child.flags == root.flags);
        CHECK(child.baggage == root.baggage);
        CHECK(TraceContext::NewRoot().trace_id != root.trace_id);
    }

    TEST_CASE("The consumer's span: MT-Activity-Id from the AMQP header - else the envelope's - else a new trace") {
        const std::string parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        const Json envelope_headers = {{"mt-activity-id", parent},
                                       {"MT-Activity-Correlation-Context",
                                        Json::parse(R"([{"key":"tenant","value":"acme"},{"Key":"blank","Value":" "},
                                                        {"key":"n","value":3},{"key":"user","value":"bob"}])")}};
        const TraceContext from_envelope = ReceiveSpan({}, envelope_headers);
        CHECK(from_envelope.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
        CHECK(from_envelope.span_id != "00f067aa0ba902b7");
        // Blank and non-string values are skipped, as MassTransit skips them.
        CHECK(from_envelope.baggage == Baggage{{"tenant", "acme"}, {"user", "bob"}});

        HeaderTable amqp = {{"MT-Activity-Id", std::string("00-11111111111111111111111111111111-2222222222222222-00")}};
        const TraceContext from_amqp = ReceiveSpan(amqp, envelope_headers);
        CHECK(from_amqp.trace_id == "11111111111111111111111111111111");
        CHECK(from_amqp.flags == 0);

        amqp["MT-Activity-Id"] = std::string("garbage");
        CHECK(ReceiveSpan(amqp, envelope_headers).trace_id == "4bf92f3577b34da6a3ce929d0e0e4736");
        const TraceContext fresh = ReceiveSpan({}, Json::object());
        CHECK(TraceContext::Parse(fresh.TraceParent()));
        CHECK(fresh.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736");
        CHECK(fresh.baggage.empty());
    }

    TEST_CASE("Trace headers are written as MassTransit writes them - baggage only when there is some") {
        TraceContext span = *TraceContext::Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        Json headers = Json::object();
        WriteTraceHeaders(span, headers);
        CHECK(headers == Json{{"MT-Activity-Id", span.TraceParent()}});
        span.baggage = {{"tenant", "acme"}};
        WriteTraceHeaders(span, headers);
        CHECK(headers["MT-Activity-Correlation-Context"] == Json::parse(R"([{"key":"tenant","value":"acme"}])"));
    }

    TEST_CASE("A child span's headers - the parent's trace - flags and baggage - a span id of its own") {
        TraceContext parent = *TraceContext::Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        parent.baggage = {{"tenant", "acme"}};
        Json headers = Json::object();
        WriteChildSpanHeaders(parent, headers);
        const auto child = TraceContext::Parse(headers["MT-Activity-Id"].get<std::string>());
        REQUIRE(child);
        CHECK(child->trace_id == parent.trace_id);
        CHECK(child->span_id != parent.span_id);
        CHECK(child->flags == 0);
        CHECK(headers["MT-Activity-Correlation-Context"] == Json::parse(R"([{"key":"tenant","value":"acme"}])"));
        Json again = Json::object();
        WriteChildSpanHeaders(parent, again);
        CHECK(again["MT-Activity-Id"] != headers["MT-Activity-Id"]);
    }

    TEST_CASE("The W3C baggage header: members - properties dropped - percent-decoded - bad members skipped") {
        CHECK(ParseBaggageHeader("tenant=acme, user = J%C3%B6rg%20B ;prop=1,broken,=novalue,bad=%zz,last=x%2") ==
              Baggage{{"tenant", "acme"}, {"user", "J\u00f6rg B"}});
        CHECK(ParseBaggageHeader("").empty());
    }
}
