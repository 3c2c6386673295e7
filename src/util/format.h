// Human-readable numbers and durations for progress lines.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace muongpt {

// 1234567 -> "1.23M", 950 -> "950"
inline std::string format_count(double x) {
  char buf[32];
  if (x >= 1e9) std::snprintf(buf, sizeof(buf), "%.2fG", x / 1e9);
  else if (x >= 1e6) std::snprintf(buf, sizeof(buf), "%.2fM", x / 1e6);
  else if (x >= 1e4) std::snprintf(buf, sizeof(buf), "%.1fk", x / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.0f", x);
  return buf;
}

// 4096 -> "4 KiB", 3 << 20 -> "3 MiB", 1.5e9 -> "1.4 GiB"
inline std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[32];
  if (bytes == std::floor(bytes)) std::snprintf(buf, sizeof(buf), "%.0f %s", bytes, units[u]);
  else std::snprintf(buf, sizeof(buf), "%.1f %s", bytes, units[u]);
  return buf;
}

// 3725 s -> "1h02m05s", 65 s -> "1m05s", 4.2 s -> "4s"
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%ldh%02ldm%02lds", s / 3600, (s / 60) % 60, s % 60);
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof(buf), "%lds", s);
  return buf;
}

// {896, 384} -> "[896, 384]"
inline std::string format_list(const std::vector<int>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + "]";
}

}  // namespace muongpt
