// Tolerant reading of JSON objects written by MassTransit peers: property names match in any case,
// decimals come as strings or numbers, and a missing or malformed required field raises a
// ContractError that names the message and the field.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "Contracts/Decimal.h"
#include "Contracts/Identifiers.h"

namespace contracts {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

class ContractError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// ASCII case-insensitive comparisons: JSON property names, URNs, header names and settings keys all
// match this way.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix);

// Finds a property by name, ignoring ASCII case; nullptr when absent. A JSON null counts as absent.
const Json* FindField(const Json& object, std::string_view name);

// Money travels as a JSON string; a JSON number is accepted on input when the document was read by
// ParseJsonExact (ExactJson.h), which keeps its text. A double is never read as a decimal.
OrderedJson DecimalToJson(const Decimal& value);
std::optional<Decimal> DecimalFromJson(const Json& value);

class FieldReader {
  public:
    // `owner` names the object in error messages, e.g. "OrderSubmitted".
    FieldReader(const Json& object, std::string owner);

    const Json* Optional(std::string_view name) const { return FindField(object_, name); }
    const Json& Required(std::string_view name) const;

    std::string RequiredString(std::string_view name) const;
    std::optional<std::string> OptionalString(std::string_view name) const;
    OrderId RequiredOrderId(std::string_view name) const;
    Decimal RequiredMoney(std::string_view name) const;  // a decimal within MoneyLimits
    std::int64_t RequiredInteger(std::string_view name) const;
    std::optional<std::int64_t> OptionalInteger(std::string_view name) const;
    std::optional<Timestamp> OptionalTimestamp(std::string_view name) const;

    [[noreturn]] void Fail(std::string_view name, std::string_view problem) const;

  private:
    const Json& object_;
    std::string owner_;
};

}  // namespace contracts
