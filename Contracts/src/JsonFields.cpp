#include "Contracts/JsonFields.h"

namespace contracts {

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char x = text[i], y = prefix[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
    return a.size() == b.size() && StartsWithIgnoreCase(a, b);
}

const Json* FindField(const Json& object, std::string_view name) {
    if (!object.is_object()) return nullptr;
    // Exact match first: it is what our own peers and MassTransit write.
    if (auto it = object.find(name); it != object.end()) return it->is_null() ? nullptr : &*it;
    for (auto it = object.begin(); it != object.end(); ++it) {
        if (EqualsIgnoreCase(it.key(), name)) return it->is_null() ? nullptr : &*it;
    }
    return nullptr;
}

OrderedJson DecimalToJson(const Decimal& value) {
    return value.ToString();
}

std::optional<Decimal> DecimalFromJson(const Json& value) {
    // A number with a fraction reaches here as its text when the document was read by ParseJsonExact;
    // one already rounded to a double by another reader is refused rather than trusted.
    if (value.is_string()) return Decimal::Parse(value.get_ref<const std::string&>());
    if (value.is_number_unsigned()) return Decimal::Parse(std::to_string(value.get<std::uint64_t>()));
    if (value.is_number_integer()) return Decimal::Parse(std::to_string(value.get<std::int64_t>()));
    return std::nullopt;
}

FieldReader::FieldReader(const Json& object, std::string owner) : object_(object), owner_(std::move(owner)) {
    if (!object_.is_object()) throw ContractError(owner_ + ": expected a JSON object");
}

void FieldReader::Fail(std::string_view name, std::string_view problem) const {
    throw ContractError(owner_ + "." + std::string(name) + ": " + std::string(problem));
}

const Json& FieldReader::Required(std::string_view name) const {
    const Json* field = FindField(object_, name);
    if (!field) Fail(name, "required field is missing");
    return *field;
}

std::string FieldReader::RequiredString(std::string_view name) const {
    const Json& field = Required(name);
    if (!field.is_string()) Fail(name, "must be a string");
    return field.get<std::string>();
}

std::optional<std::string> FieldReader::OptionalString(std::string_view name) const {
    const Json* field = Optional(name);
    if (!field) return std::nullopt;
    if (!field->is_string()) Fail(name, "must be a string");
    return field->get<std::string>();
}

OrderId FieldReader::RequiredOrderId(std::string_view name) const {
    auto value = OrderId::Parse(RequiredString(name));
    if (!value) Fail(name, "must be 1-64 characters of [A-Za-z0-9_-]");
    return *value;
}

Decimal FieldReader::RequiredMoney(std::string_view name) const {
    auto value = DecimalFromJson(Required(name));
    if (!value || !IsMoney(*value))
        Fail(name, std::string("must be an amount (a string such as \"149.97\" or a JSON number) with ") +
                       MoneyLimits::kRule);
    return *value;
}

std::int64_t FieldReader::RequiredInteger(std::string_view name) const {
    const Json& field = Required(name);
    if (!field.is_number_integer()) Fail(name, "must be an integer JSON number");
    return field.get<std::int64_t>();
}

std::optional<std::int64_t> FieldReader::OptionalInteger(std::string_view name) const {
    if (!Optional(name)) return std::nullopt;
    return RequiredInteger(name);
}

std::optional<Timestamp> FieldReader::OptionalTimestamp(std::string_view name) const {
    const Json* field = Optional(name);
    if (!field) return std::nullopt;
    if (!field->is_string()) Fail(name, "must be an ISO-8601 date-time string");
    auto parsed = ParseIso8601(field->get_ref<const std::string&>());
    if (!parsed) Fail(name, "must be an ISO-8601 date-time string");
    return parsed;
}

}  // namespace contracts
