// A consumer of frugal: includes the umbrella header and uses a core type.
#include <frugal/frugal.hpp>

#include <cstdio>

int main() {
  const frugal::half h(1.5f);
  std::printf("frugal %s: half(1.5) = %g\n", FRUGAL_VERSION_STRING, static_cast<float>(h));
  return static_cast<float>(h) == 1.5f ? 0 : 1;
}
