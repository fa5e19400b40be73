#include "core/formats/safetensors_format.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/formats/json_nesting.h"

namespace musc {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  const char* name;
  size_t size;
};

// Every byte-sized dtype of the format. The sub-byte ones (F4, F6_E2M3, F6_E3M2) pack several
// elements per byte and are listed separately so the error can say "unsupported" rather than
// "unknown".
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},     {"C64", 8},
};
constexpr const char* kSubByteDtypes[] = {"F4", "F6_E2M3", "F6_E3M2"};

constexpr char kMetadataKey[] = "__metadata__";

// A short description of a JSON value for error messages. Containers are described, never dumped:
// dumping recurses, and a hostile value could be arbitrarily large. The replace handler keeps
// dump() from throwing on invalid UTF-8 inside strings.
std::string Describe(const json& value) {
  if (value.is_array()) return absl::StrCat("an array of ", value.size(), " elements");
  if (value.is_object()) return absl::StrCat("an object of ", value.size(), " keys");
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Printable rendering of a name taken from the file, for messages.
std::string Quote(std::string_view name) {
  std::string text = json(std::string(name)).dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 120) text = text.substr(0, 117) + "...\"";
  return text;
}

// Reads a non-negative JSON integer that fits in `max`.
bool ReadCount(const json& value, uint64_t max, uint64_t* out) {
  if (!value.is_number_integer()) return false;
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
  } else {
    const int64_t v = value.get<int64_t>();
    if (v < 0) return false;
    *out = static_cast<uint64_t>(v);
  }
  return *out <= max;
}

absl::StatusOr<SafetensorsEntry> ParseEntry(const std::string& name, const json& info,
                                            const std::string& where) {
  if (!info.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "expected an object with dtype, shape and data_offsets, found ", Describe(info)));
  }
  SafetensorsEntry entry;
  entry.name = name;

  const auto dtype = info.find("dtype");
  if (dtype == info.end() || !dtype->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "expected a string \"dtype\", found ",
                     dtype == info.end() ? std::string("none") : Describe(*dtype)));
  }
  entry.dtype = dtype->get<std::string>();
  const size_t item_size = SafetensorsDtypeSize(entry.dtype);
  if (item_size == 0) {
    for (const char* sub_byte : kSubByteDtypes) {
      if (entry.dtype == sub_byte) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "dtype ", entry.dtype, " packs several elements per byte and is not supported"));
      }
    }
    std::vector<std::string> known;
    for (const DtypeInfo& d : kDtypes) known.push_back(d.name);
    return absl::InvalidArgumentError(absl::StrCat(
        where, "expected a dtype among ", absl::StrJoin(known, " "), ", found ", Describe(*dtype)));
  }

  const auto shape = info.find("shape");
  if (shape == info.end() || !shape->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "expected an array \"shape\", found ",
                     shape == info.end() ? std::string("none") : Describe(*shape)));
  }
  if (shape->size() > kSafetensorsMaxRank) {
    return absl::InvalidArgumentError(absl::StrCat(where, "expected at most ", kSafetensorsMaxRank,
                                                   " dimensions, found ", shape->size()));
  }
  bool has_zero = false;
  for (size_t i = 0; i < shape->size(); ++i) {
    uint64_t dim = 0;
    if (!ReadCount((*shape)[i], std::numeric_limits<int64_t>::max(), &dim)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "shape[", i, "]: expected a non-negative integer below 2^63, found ",
                       Describe((*shape)[i])));
    }
    has_zero = has_zero || dim == 0;
    entry.shape.push_back(static_cast<int64_t>(dim));
  }
  // Element count and byte size, overflow-checked. A zero dimension makes the tensor empty however
  // large the others are, so the product is only formed when there is none.
  uint64_t num_bytes = 0;
  if (!has_zero) {
    uint64_t numel = 1;
    for (int64_t dim : entry.shape) {
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel)) {
        return absl::InvalidArgumentError(absl::StrCat(where, "shape ", ShapeString(entry.shape),
                                                       " has more than 2^64 elements"));
      }
    }
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(item_size), &num_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat(where, "shape ", ShapeString(entry.shape),
                                                     " of ", entry.dtype,
                                                     " needs more than 2^64 bytes"));
    }
  }

  const auto offsets = info.find("data_offsets");
  uint64_t begin = 0, end = 0;
  if (offsets == info.end() || !offsets->is_array() || offsets->size() != 2 ||
      !ReadCount((*offsets)[0], std::numeric_limits<uint64_t>::max(), &begin) ||
      !ReadCount((*offsets)[1], std::numeric_limits<uint64_t>::max(), &end)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "expected \"data_offsets\" [begin, end] of two non-negative integers, found ",
        offsets == info.end() ? std::string("none") : Describe(*offsets)));
  }
  if (end < begin) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "data_offsets [", begin, ", ", end, "] end before they begin"));
  }
  if (end - begin != num_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "shape ", ShapeString(entry.shape), " of ", entry.dtype, " needs ", num_bytes,
        " bytes, but data_offsets [", begin, ", ", end, "] span ", end - begin));
  }
  entry.begin = begin;
  entry.end = end;
  return entry;
}

absl::Status ParseMetadata(const json& value, const std::string& where,
                           std::map<std::string, std::string>* metadata) {
  if (value.is_null()) return absl::OkStatus();  // The reference reader accepts null as absent.
  if (!value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "expected an object mapping strings to strings, found ", Describe(value)));
  }
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "key ", Quote(key), ": expected a string, found ", Describe(item)));
    }
    (*metadata)[key] = item.get<std::string>();
  }
  return absl::OkStatus();
}

}  // namespace

size_t SafetensorsDtypeSize(std::string_view dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (dtype == d.name) return d.size;
  }
  return 0;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view file_prefix,
                                                         uint64_t file_size,
                                                         std::string_view file_name) {
  const std::string file(file_name);
  if (file_prefix.size() > file_size) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", file_prefix.size(),
                                                   " bytes given for a file of only ", file_size));
  }
  if (file_size < 8 || file_prefix.size() < 8) {
    return absl::DataLossError(absl::StrCat(
        file, ": expected at least the 8-byte header length of a safetensors file, found ",
        file_size < 8 ? file_size : file_prefix.size(), " bytes"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<unsigned char>(file_prefix[i]);
  }
  if (header_len > kSafetensorsMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": header length ", header_len,
                                                   " exceeds the limit of ",
                                                   kSafetensorsMaxHeaderBytes, " bytes"));
  }
  if (header_len > file_size - 8) {
    return absl::DataLossError(absl::StrCat(file, ": the header declares ", header_len,
                                            " bytes but the file has only ", file_size - 8,
                                            " after the length field (truncated?)"));
  }
  if (file_prefix.size() < 8 + header_len) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": only the first ", file_prefix.size(),
                                                   " bytes were given; the header needs ",
                                                   8 + header_len));
  }
  const std::string_view text = file_prefix.substr(8, header_len);
  if (text.empty() || text.front() != '{') {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": expected the JSON header to start with '{', found ",
        text.empty() ? std::string("an empty header")
                     : absl::StrCat("byte 0x", absl::Hex(static_cast<unsigned char>(text[0]),
                                                         absl::kZeroPad2))));
  }
  if (JsonNestingDepth(text, kSafetensorsMaxJsonDepth) > kSafetensorsMaxJsonDepth) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": the JSON header nests deeper than ",
                                                   kSafetensorsMaxJsonDepth, " levels"));
  }

  // nlohmann keeps the last of duplicate keys silently; the format forbids them, and a file whose
  // readers may disagree about which tensor a name means is rejected. The callback sees every
  // key of every object as it is parsed.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  const json::parser_callback_t find_duplicates = [&](int /*depth*/, json::parse_event_t event,
                                                      json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty() && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) duplicate = key;
    }
    return true;
  };
  json root;
  try {
    root = json::parse(text.begin(), text.end(), find_duplicates, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": the header is not valid JSON: ", e.what()));
  }
  if (!duplicate.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": the header has the key ", Quote(duplicate), " more than once"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": expected the header to be a JSON object, found ", Describe(root)));
  }

  SafetensorsHeader header;
  header.data_start = 8 + header_len;
  const uint64_t data_size = file_size - header.data_start;
  for (const auto& [name, info] : root.items()) {
    if (name == kMetadataKey) {
      absl::Status status =
          ParseMetadata(info, absl::StrCat(file, ": ", kMetadataKey, ": "), &header.metadata);
      if (!status.ok()) return status;
      continue;
    }
    const std::string where = absl::StrCat(file, ": tensor ", Quote(name), ": ");
    absl::StatusOr<SafetensorsEntry> entry = ParseEntry(name, info, where);
    if (!entry.ok()) return entry.status();
    if (entry->end > data_size) {
      return absl::DataLossError(absl::StrCat(where, "data_offsets [", entry->begin, ", ",
                                              entry->end, "] extend past the data section of ",
                                              data_size, " bytes (truncated file?)"));
    }
    header.tensors.push_back(*std::move(entry));
  }

  // The format requires the tensors to tile the data section exactly: every byte belongs to one
  // tensor. This is what makes a file's memory use predictable and rules out aliasing tensors.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
            });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& entry : header.tensors) {
    if (entry.begin < covered) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor ", Quote(entry.name), ": data_offsets [", entry.begin, ", ",
                       entry.end, "] overlap tensor ", Quote(previous->name), " at [",
                       previous->begin, ", ", previous->end, "]"));
    }
    if (entry.begin > covered) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor ", Quote(entry.name), ": expected data to begin at byte ",
                       covered, " of the data section, found ", entry.begin, " (bytes [", covered,
                       ", ", entry.begin, ") belong to no tensor)"));
    }
    covered = entry.end;
    previous = &entry;
  }
  if (covered != data_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": the tensors cover ", covered, " bytes of the data section, but it has ", data_size,
        " (", data_size - covered, " trailing bytes belong to no tensor)"));
  }
  return header;
}

absl::StatusOr<std::string> EncodeSafetensorsHeader(
    const std::vector<SafetensorsEntry>& tensors,
    const std::map<std::string, std::string>& metadata) {
  json root = json::object();
  uint64_t data_size = 0;
  for (const SafetensorsEntry& entry : tensors) {
    if (entry.name == kMetadataKey) {
      return absl::InvalidArgumentError(
          absl::StrCat("a tensor may not be named ", kMetadataKey, " in a safetensors file"));
    }
    if (root.contains(entry.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor name ", Quote(entry.name), " appears more than once"));
    }
    root[entry.name] = {
        {"dtype", entry.dtype}, {"shape", entry.shape}, {"data_offsets", {entry.begin, entry.end}}};
    data_size = std::max(data_size, entry.end);
  }
  if (!metadata.empty()) root[kMetadataKey] = metadata;

  std::string text;
  try {
    text = root.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::type_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("a tensor name or metadata string is not valid UTF-8: ", e.what()));
  }
  // Pad so that 8 + length is a multiple of 8: the data section then starts aligned, and so does
  // every tensor the writer places at a multiple of its item size.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<char>(length & 0xff);
    length >>= 8;
  }
  bytes += text;

  if (data_size > std::numeric_limits<uint64_t>::max() - bytes.size()) {
    return absl::InvalidArgumentError("tensor offsets exceed the largest possible file");
  }
  absl::StatusOr<SafetensorsHeader> check =
      ParseSafetensorsHeader(bytes, bytes.size() + data_size, "safetensors header being written");
  if (!check.ok()) return check.status();
  return bytes;
}

}  // namespace musc
