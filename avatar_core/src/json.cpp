#include "dhm/json.hpp"

#include <cctype>
#include <climits>
#include <cmath>
#include <cstdlib>

#include "dhm/error.hpp"

namespace dhm {

// Strict JSON (RFC 8259 numbers: no NaN, Infinity, hex or leading '+'), nested at most
// kMaxDepth levels (a recursive reader overflows its stack on deeper input), as dhm's
// Python reader (dhm.io.parse_json).
class JsonParser {
public:
    static constexpr int kMaxDepth = 64;
    static constexpr size_t kMaxBytes = size_t(64) << 20;

    explicit JsonParser(const std::string& text) : s_(text) {
        if (s_.size() > kMaxBytes) fail("larger than 64 MiB");
    }

    Json document() {
        Json v = value();
        skip();
        if (pos_ != s_.size()) fail("trailing characters");
        return v;
    }

private:
    const std::string& s_;
    size_t pos_ = 0;
    int depth_ = 0;

    struct Nest {
        JsonParser& p;
        explicit Nest(JsonParser& parser) : p(parser) {
            if (++p.depth_ > kMaxDepth) p.fail("nested deeper than 64 levels");
        }
        ~Nest() { --p.depth_; }
    };

    bool digit() const { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; }

    // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, finite
    double number() {
        const size_t start = pos_;
        if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
        if (!digit()) fail("unexpected character");
        if (s_[pos_] == '0') {
            ++pos_;
        } else {
            while (digit()) ++pos_;
        }
        if (pos_ < s_.size() && s_[pos_] == '.') {
            ++pos_;
            if (!digit()) fail("bad number");
            while (digit()) ++pos_;
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
            if (!digit()) fail("bad number");
            while (digit()) ++pos_;
        }
        const double d = std::strtod(s_.substr(start, pos_ - start).c_str(), nullptr);
        if (!std::isfinite(d)) fail("number out of range");
        return d;
    }

    [[noreturn]] void fail(const std::string& what) const {
        throw Error("manifest JSON: " + what + " at byte " + std::to_string(pos_));
    }
    void skip() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
    }
    bool eat(char c) {
        skip();
        if (pos_ < s_.size() && s_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!eat(c)) fail(std::string("expected '") + c + "'");
    }
    bool literal(const char* word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(pos_, n, word) == 0) {
            pos_ += n;
            return true;
        }
        return false;
    }

    Json value() {
        skip();
        if (pos_ >= s_.size()) fail("unexpected end");
        Json v;
        char c = s_[pos_];
        if (c == '{') {
            Nest nest(*this);
            ++pos_;
            v.type_ = Json::Type::Object;
            if (eat('}')) return v;
            do {
                skip();
                std::string key = string();
                expect(':');
                v.index_[key] = v.items_.size();
                v.keys_.push_back(key);
                v.items_.push_back(value());
            } while (eat(','));
            expect('}');
        } else if (c == '[') {
            Nest nest(*this);
            ++pos_;
            v.type_ = Json::Type::Array;
            if (eat(']')) return v;
            do {
                v.items_.push_back(value());
            } while (eat(','));
            expect(']');
        } else if (c == '"') {
            v.type_ = Json::Type::String;
            v.string_ = string();
        } else if (literal("true")) {
            v.type_ = Json::Type::Bool;
            v.bool_ = true;
        } else if (literal("false")) {
            v.type_ = Json::Type::Bool;
        } else if (literal("null")) {
        } else {
            v.number_ = number();
            v.type_ = Json::Type::Number;
        }
        return v;
    }

    std::string string() {
        if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string");
        ++pos_;
        std::string out;
        while (pos_ < s_.size() && s_[pos_] != '"') {
            char c = s_[pos_++];
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= s_.size()) break;
            char e = s_[pos_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    if (pos_ + 4 > s_.size()) fail("bad \\u escape");
                    for (size_t k = 0; k < 4; ++k)
                        if (!std::isxdigit(static_cast<unsigned char>(s_[pos_ + k]))) fail("bad \\u escape");
                    unsigned code = static_cast<unsigned>(std::strtoul(s_.substr(pos_, 4).c_str(), nullptr, 16));
                    pos_ += 4;
                    // UTF-8 encode (the manifest's strings are ASCII; enough for the BMP)
                    if (code < 0x80) {
                        out += static_cast<char>(code);
                    } else if (code < 0x800) {
                        out += static_cast<char>(0xC0 | (code >> 6));
                        out += static_cast<char>(0x80 | (code & 0x3F));
                    } else {
                        out += static_cast<char>(0xE0 | (code >> 12));
                        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
                        out += static_cast<char>(0x80 | (code & 0x3F));
                    }
                    break;
                }
                case '"': case '\\': case '/': out += e; break;
                default: fail("bad escape");
            }
        }
        if (pos_ >= s_.size()) fail("unterminated string");
        ++pos_;
        return out;
    }
};

Json Json::parse(const std::string& text) { return JsonParser(text).document(); }

bool Json::has(const std::string& key) const { return is_object() && index_.count(key) > 0; }

const Json& Json::at(const std::string& key) const {
    if (!is_object()) throw Error("manifest: expected an object holding '" + key + "'");
    auto it = index_.find(key);
    if (it == index_.end()) throw Error("manifest: missing '" + key + "'");
    return items_[it->second];
}

const Json& Json::at(size_t index) const {
    if (!is_array() || index >= items_.size()) throw Error("manifest: array index " + std::to_string(index) + " out of range");
    return items_[index];
}

size_t Json::size() const { return items_.size(); }

double Json::number(const char* what) const {
    if (type_ != Type::Number) throw Error(std::string("manifest: ") + what + " must be a number");
    return number_;
}

int Json::integer(const char* what) const {
    double d = number(what);
    if (std::floor(d) != d) throw Error(std::string("manifest: ") + what + " must be an integer");
    if (d < INT_MIN || d > INT_MAX) throw Error(std::string("manifest: ") + what + " is out of range");
    return static_cast<int>(d);
}

const std::string& Json::str(const char* what) const {
    if (type_ != Type::String) throw Error(std::string("manifest: ") + what + " must be a string");
    return string_;
}

bool Json::boolean(const char* what) const {
    if (type_ != Type::Bool) throw Error(std::string("manifest: ") + what + " must be true or false");
    return bool_;
}

std::vector<int> Json::int_list(const char* what) const {
    if (!is_array()) throw Error(std::string("manifest: ") + what + " must be a list");
    std::vector<int> out;
    for (const auto& v : items_) out.push_back(v.integer(what));
    return out;
}

}  // namespace dhm
