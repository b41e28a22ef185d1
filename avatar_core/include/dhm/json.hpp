// A small JSON reader for the manifest: objects, arrays, strings, numbers, booleans, null.
// The core has no third-party dependencies, so it carries its own; it reads, never writes.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dhm {

class Json {
public:
    enum class Type { Null, Bool, Number, String, Array, Object };

    static Json parse(const std::string& text);  // throws dhm::Error with the byte offset

    Type type() const { return type_; }
    bool is_object() const { return type_ == Type::Object; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_string() const { return type_ == Type::String; }
    bool is_number() const { return type_ == Type::Number; }

    bool has(const std::string& key) const;
    // Accessors throw dhm::Error naming `what` when the value has another type.
    const Json& at(const std::string& key) const;
    const Json& at(size_t index) const;
    size_t size() const;
    double number(const char* what = "value") const;
    int integer(const char* what = "value") const;
    const std::string& str(const char* what = "value") const;
    bool boolean(const char* what = "value") const;
    std::vector<int> int_list(const char* what = "value") const;
    const std::vector<std::string>& keys() const { return keys_; }

private:
    Type type_ = Type::Null;
    bool bool_ = false;
    double number_ = 0.0;
    std::string string_;
    std::vector<Json> items_;
    std::vector<std::string> keys_;  // object keys in file order
    std::map<std::string, size_t> index_;

    friend class JsonParser;
};

}  // namespace dhm
