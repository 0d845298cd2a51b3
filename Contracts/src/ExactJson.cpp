#include "Contracts/ExactJson.h"

#include <vector>

namespace contracts {
namespace {

// Builds the document as nlohmann's own DOM builder does (a stack of the open arrays and objects),
// except that a number the parser would store as a double is stored as its text.
class ExactDomBuilder : public nlohmann::json_sax<Json> {
  public:
    ExactDomBuilder(Json& root, NumberTexts* number_texts) : root_(root), number_texts_(number_texts) {}

    bool null() override { return Put(nullptr) != nullptr; }
    bool boolean(bool value) override { return Put(value) != nullptr; }
    bool number_integer(number_integer_t value) override { return Put(value) != nullptr; }
    bool number_unsigned(number_unsigned_t value) override { return Put(value) != nullptr; }
    bool number_float(number_float_t /*rounded*/, const string_t& text) override {
        Json* stored = Put(text);
        if (number_texts_) number_texts_->Add(stored->get_ptr<const std::string*>());
        return true;
    }
    bool string(string_t& value) override { return Put(std::move(value)) != nullptr; }
    bool binary(binary_t& value) override { return Put(Json::binary(std::move(value))) != nullptr; }

    bool start_object(std::size_t /*elements*/) override {
        open_.push_back(Put(Json::object()));
        return true;
    }
    bool key(string_t& name) override {
        key_ = &(*open_.back())[name];
        return true;
    }
    bool end_object() override {
        open_.pop_back();
        return true;
    }
    bool start_array(std::size_t /*elements*/) override {
        open_.push_back(Put(Json::array()));
        return true;
    }
    bool end_array() override {
        open_.pop_back();
        return true;
    }

    bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                     const nlohmann::detail::exception& /*error*/) override {
        failed_ = true;
        return false;
    }
    bool failed() const { return failed_; }

  private:
    // Stores a value where the parser is: the root, the end of the open array, or the open object's
    // last key. Returns where it lies; it does not move while the document is being built further,
    // except for array elements, whose strings (the only values kept by address) are on the heap.
    template <typename Value>
    Json* Put(Value&& value) {
        if (open_.empty()) {
            root_ = Json(std::forward<Value>(value));
            return &root_;
        }
        Json& container = *open_.back();
        if (container.is_array()) {
            container.emplace_back(std::forward<Value>(value));
            return &container.back();
        }
        *key_ = Json(std::forward<Value>(value));
        return key_;
    }

    Json& root_;
    NumberTexts* number_texts_;
    std::vector<Json*> open_;
    Json* key_ = nullptr;
    bool failed_ = false;
};

}  // namespace

Json ParseJsonExact(std::string_view text, NumberTexts* number_texts, bool ignore_comments) {
    Json root;
    ExactDomBuilder builder(root, number_texts);
    const bool ok =
        Json::sax_parse(text, &builder, nlohmann::detail::input_format_t::json, /*strict=*/true, ignore_comments);
    if (!ok || builder.failed()) return Json(Json::value_t::discarded);
    return root;
}

}  // namespace contracts
