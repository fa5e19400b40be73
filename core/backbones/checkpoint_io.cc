// The one translation unit of core/ that includes the TorchScript importer (heavy to compile): keep
// every other use of torch::jit out of core/.
#include "core/backbones/checkpoint_io.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/error_report.h>
#include <torch/csrc/jit/serialization/import.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/formats/safetensors_format.h"
#include "core/torch_status.h"

// safetensors data is little-endian and is copied byte for byte into tensors, which is only right
// on a little-endian host (every platform this project targets).
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint_io.cc assumes a little-endian host"
#endif

namespace musc {
namespace {

struct DtypeName {
  const char* safetensors;
  at::ScalarType scalar_type;
};

// The safetensors dtypes LibTorch 1.13 can hold. BOOL is read as bytes and converted, so that a
// byte other than 0 or 1 in a hostile file still yields a valid bool tensor.
constexpr DtypeName kDtypeNames[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

std::optional<at::ScalarType> ScalarTypeOf(std::string_view dtype) {
  for (const DtypeName& d : kDtypeNames) {
    if (dtype == d.safetensors) return d.scalar_type;
  }
  return std::nullopt;
}

const char* SafetensorsNameOf(at::ScalarType type) {
  for (const DtypeName& d : kDtypeNames) {
    if (type == d.scalar_type) return d.safetensors;
  }
  return nullptr;
}

// Debian's Abseil is built with its own string_view type, so absl::StartsWith does not take
// std::string_view.
bool HasPrefix(const std::string& name, std::string_view prefix) {
  return name.compare(0, prefix.size(), prefix) == 0;
}

absl::Status ErrnoStatus(int error, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::DataLossError(message);
  }
}

// Closes the descriptor on every return path.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports the error, which matters after writing (delayed write errors).
  int Close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Reads exactly `size` bytes at `offset` (pread may return less than asked, or be interrupted).
bool ReadFully(int fd, uint64_t offset, char* out, uint64_t size) {
  while (size > 0) {
    const ssize_t n = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return true;
}

bool WriteFully(int fd, const char* data, uint64_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<uint64_t>(n);
  }
  return true;
}

// What every reader returns: detached (TorchScript parameters require grad, and the engine must
// not build autograd graphs), on the CPU, contiguous, floating types as float32.
at::Tensor Normalised(const at::Tensor& tensor) {
  at::Tensor out = tensor.detach();
  if (!out.device().is_cpu()) out = out.cpu();
  if (at::isFloatingType(out.scalar_type())) out = out.to(at::kFloat);
  return out.contiguous();
}

// Reads one validated entry into an owned tensor.
absl::StatusOr<at::Tensor> ReadSafetensorsEntry(int fd, uint64_t data_start,
                                                const SafetensorsEntry& entry,
                                                const std::string& path) {
  const std::string where = absl::StrCat(path, ": tensor \"", entry.name, "\": ");
  const std::optional<at::ScalarType> type = ScalarTypeOf(entry.dtype);
  if (!type) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "dtype ", entry.dtype,
        " has no LibTorch 1.13 equivalent; expected one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 "
        "BOOL"));
  }
  // The header check bounds the byte size, but an empty tensor may still declare dimensions whose
  // product (its strides) overflows int64, which LibTorch does not guard against.
  int64_t extent = 1;
  for (int64_t dim : entry.shape) {
    if (__builtin_mul_overflow(extent, std::max<int64_t>(dim, 1), &extent)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "its dimensions multiply to more than 2^63, which LibTorch cannot represent"));
    }
  }
  try {
    const at::ScalarType stored = *type == at::kBool ? at::kByte : *type;
    at::Tensor tensor = at::empty(entry.shape, at::TensorOptions().dtype(stored));
    const uint64_t size = entry.end - entry.begin;
    errno = 0;
    if (size > 0 &&
        !ReadFully(fd, data_start + entry.begin, static_cast<char*>(tensor.data_ptr()), size)) {
      // errno stays 0 when the file ended early: it shrank after its header was validated.
      return absl::DataLossError(absl::StrCat(
          where, "could not read its ", size, " bytes at offset ", data_start + entry.begin, ": ",
          errno != 0 ? std::strerror(errno) : "the file ended early"));
    }
    if (*type == at::kBool) tensor = tensor.ne(0);
    return Normalised(tensor);
  } catch (const c10::Error& e) {
    // Allocation failure is the one expected here: the tensor is at most as large as the file.
    return TorchErrorToStatus(e, absl::StrCat(where, "could not be allocated"),
                              absl::StatusCode::kResourceExhausted);
  }
}

absl::StatusOr<TensorMap> ReadSafetensors(int fd, uint64_t file_size, const std::string& path,
                                          std::string_view keep_prefix) {
  // Advisory only: the tensors are read front to back.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::string prefix(8, '\0');
  if (!ReadFully(fd, 0, prefix.data(), 8)) return ErrnoStatus(errno, path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<unsigned char>(prefix[i]);
  }
  // Bounds are checked before the header is read (and before any allocation of its size).
  if (header_len <= kSafetensorsMaxHeaderBytes && header_len <= file_size - 8) {
    prefix.resize(8 + header_len);
    if (!ReadFully(fd, 8, prefix.data() + 8, header_len)) {
      return absl::DataLossError(absl::StrCat(path, ": could not read the ", header_len,
                                              "-byte header: ", std::strerror(errno)));
    }
  }
  MUSC_ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensorsHeader(prefix, file_size, path));

  TensorMap tensors;
  for (const SafetensorsEntry& entry : header.tensors) {
    if (!HasPrefix(entry.name, keep_prefix)) continue;
    MUSC_ASSIGN_OR_RETURN(at::Tensor tensor,
                          ReadSafetensorsEntry(fd, header.data_start, entry, path));
    tensors[entry.name] = std::move(tensor);
  }
  return tensors;
}

absl::StatusOr<TensorMap> ReadTorchArchive(const std::string& path, std::string_view keep_prefix) {
  TensorMap tensors;
  try {
    {
      // A TorchScript archive carries its code and constants; a torch.save() archive only a
      // pickle (data.pkl) whose state_dict LibTorch 1.13 cannot unpickle. Look before loading so
      // the error says what the file is.
      caffe2::serialize::PyTorchStreamReader reader(path);
      if (!reader.hasRecord("constants.pkl")) {
        if (reader.hasRecord("data.pkl")) {
          return absl::InvalidArgumentError(absl::StrCat(
              path,
              ": is a torch.save() archive (a pickled state_dict), not a TorchScript archive; "
              "LibTorch 1.13 cannot unpickle state_dicts. Convert it to safetensors, e.g. "
              "safetensors.torch.save_file(torch.load(f, map_location='cpu'), out)"));
        }
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": is a zip archive without constants.pkl or data.pkl, not a PyTorch file"));
      }
    }
    const torch::jit::Module module = torch::jit::load(path, at::Device(at::kCPU));
    for (const auto& parameter : module.named_parameters(/*recurse=*/true)) {
      if (HasPrefix(parameter.name, keep_prefix)) {
        tensors[parameter.name] = Normalised(parameter.value);
      }
    }
    for (const auto& buffer : module.named_buffers(/*recurse=*/true)) {
      if (HasPrefix(buffer.name, keep_prefix)) {
        tensors[buffer.name] = Normalised(buffer.value);
      }
    }
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(
        e,
        absl::StrCat(path,
                     ": could not be loaded as a TorchScript archive (corrupt or truncated?)"),
        absl::StatusCode::kInvalidArgument);
  } catch (const torch::jit::ErrorReport& e) {
    // Raised when the archive's code does not compile (e.g. a newer exporter's operators).
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the TorchScript archive's code could not be compiled: ", e.what()));
  }
  return tensors;
}

}  // namespace

absl::StatusOr<TensorMap> ReadCheckpoint(const std::string& path, std::string_view keep_prefix) {
  const int raw_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw_fd < 0) return ErrnoStatus(errno, path);
  ScopedFd fd(raw_fd);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return ErrnoStatus(errno, path);
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is not a regular file"));
  }
  const uint64_t file_size = static_cast<uint64_t>(info.st_size);
  unsigned char magic[9] = {};
  if (file_size < sizeof(magic) || !ReadFully(fd.get(), 0, reinterpret_cast<char*>(magic), 9)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": only ", file_size, " bytes, too short for any checkpoint format (truncated?)"));
  }

  if (std::memcmp(magic, "PK\x03\x04", 4) == 0) {
    fd.Close();  // torch::jit::load opens the file itself.
    return ReadTorchArchive(path, keep_prefix);
  }
  // safetensors: an 8-byte length, then a JSON object.
  if (magic[8] == '{') return ReadSafetensors(fd.get(), file_size, path, keep_prefix);
  // Pickle protocol 2 opcode: PyTorch's serialisation before 1.6 (torch.save without zip).
  if (magic[0] == 0x80) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": is a legacy (pre-1.6) PyTorch pickle file, which is not supported; convert it "
        "to safetensors"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path,
      ": expected a safetensors file (8-byte length, then '{') or a PyTorch zip archive "
      "(\"PK\\x03\\x04\"); found first bytes ",
      absl::Hex(magic[0], absl::kZeroPad2), " ", absl::Hex(magic[1], absl::kZeroPad2), " ",
      absl::Hex(magic[2], absl::kZeroPad2), " ", absl::Hex(magic[3], absl::kZeroPad2),
      " and byte 8 ", absl::Hex(magic[8], absl::kZeroPad2)));
}

absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors,
                              const std::map<std::string, std::string>& metadata) {
  struct Pending {
    SafetensorsEntry entry;
    at::Tensor data;  // CPU, contiguous; bool stored as bytes.
    size_t item_size;
  };
  std::vector<Pending> pending;
  try {
    for (const auto& [name, tensor] : tensors) {
      if (!tensor.defined()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor \"", name, "\" is undefined"));
      }
      const char* dtype = SafetensorsNameOf(tensor.scalar_type());
      if (dtype == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor \"", name, "\" has dtype ",
                                                       c10::toString(tensor.scalar_type()),
                                                       ", which safetensors cannot store"));
      }
      Pending p;
      p.entry.name = name;
      p.entry.dtype = dtype;
      p.entry.shape.assign(tensor.sizes().begin(), tensor.sizes().end());
      p.data = tensor.detach().cpu().contiguous();
      if (p.data.scalar_type() == at::kBool) p.data = p.data.to(at::kByte);
      p.item_size = SafetensorsDtypeSize(dtype);
      pending.push_back(std::move(p));
    }
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, absl::StrCat(path, ": could not prepare tensors"));
  }
  // Largest items first, then by name: each tensor then starts at a multiple of its item size
  // (the data section itself starts 8-byte aligned), which lets other readers map it in place.
  std::stable_sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
    if (a.item_size != b.item_size) return a.item_size > b.item_size;
    return a.entry.name < b.entry.name;
  });
  std::vector<SafetensorsEntry> entries;
  uint64_t offset = 0;
  for (Pending& p : pending) {
    p.entry.begin = offset;
    offset += static_cast<uint64_t>(p.data.numel()) * p.item_size;
    p.entry.end = offset;
    entries.push_back(p.entry);
  }
  absl::StatusOr<std::string> header = EncodeSafetensorsHeader(entries, metadata);
  if (!header.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", header.status().message()));
  }

  // A unique temporary name in the target directory, so the rename is atomic.
  static std::atomic<uint64_t> counter{0};
  const std::string temp = absl::StrCat(path, ".tmp.", ::getpid(), ".", counter++);
  const int raw_fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (raw_fd < 0) return ErrnoStatus(errno, temp);
  ScopedFd fd(raw_fd);
  bool ok = WriteFully(fd.get(), header->data(), header->size());
  for (const Pending& p : pending) {
    if (!ok) break;
    ok = WriteFully(fd.get(), static_cast<const char*>(p.data.data_ptr()),
                    p.entry.end - p.entry.begin);
  }
  ok = ok && ::fsync(fd.get()) == 0;
  ok = fd.Close() == 0 && ok;
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    return ErrnoStatus(error, absl::StrCat(path, ": could not be written"));
  }
  return absl::OkStatus();
}

}  // namespace musc
