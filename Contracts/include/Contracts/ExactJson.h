// A JSON reader that never turns a number with a fraction or an exponent into a double: such a
// number is kept as the exact text it was written with, as a JSON string, so money read from it
// ("12345678901234567.89") is the amount that was sent. Integers stay integers (exact in 64 bits);
// an integer too large for 64 bits is kept as text too.
#pragma once

#include <string_view>
#include <unordered_set>

#include "Contracts/JsonFields.h"

namespace contracts {

// The strings of a document that were numbers in its text (so a reader that wants a string can
// refuse them); identified by the address of the string each one is stored in.
class NumberTexts {
  public:
    bool Contains(const Json& value) const {
        return value.is_string() && texts_.count(value.get_ptr<const std::string*>()) != 0;
    }
    void Add(const std::string* text) { texts_.insert(text); }

  private:
    std::unordered_set<const std::string*> texts_;
};

// Parses `text`; a discarded value (is_discarded()) when it is not valid JSON. `number_texts`, when
// given, learns which strings of the result were numbers; it stays valid while the result is not
// modified.
Json ParseJsonExact(std::string_view text, NumberTexts* number_texts = nullptr, bool ignore_comments = false);

}  // namespace contracts
