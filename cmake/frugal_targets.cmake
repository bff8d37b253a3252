# Helpers for frugal's own tests, examples and benchmarks (never applied to consumers' targets).

# Warnings are errors on frugal's own targets only.
add_library(frugal_warnings INTERFACE)
target_compile_options(frugal_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror -Wno-error=deprecated-declarations>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Werror --Werror=all-warnings -Wno-deprecated-gpu-targets
                             --expt-relaxed-constexpr -lineinfo>)

add_library(frugal_sanitize INTERFACE)
if(FRUGAL_SANITIZE)
  target_compile_options(frugal_sanitize INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer>)
  target_link_options(frugal_sanitize INTERFACE -fsanitize=address,undefined -fno-sanitize-recover=all)
endif()

# frugal_add_executable(<name> SOURCES ... [LIBS ...]) — one of our programs, with warnings-as-errors.
function(frugal_add_executable name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE frugal::frugal frugal_warnings frugal_sanitize ${A_LIBS})
  foreach(src IN LISTS A_SOURCES)
    if(src MATCHES "\\.cu$")
      set_target_properties(${name} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
      target_link_libraries(${name} PRIVATE CUDA::cudart)
    endif()
  endforeach()
endfunction()

# Optional third-party pieces used by the vocab component, its tests and the examples (Debian packages):
#   frugal_pcre2  — PCRE2 8-bit with JIT (libpcre2-dev), for GPT-2's exact pre-tokenisation regex.
#   nlohmann_json::nlohmann_json — (nlohmann-json3-dev) for tokenizer.json / safetensors headers.
if(NOT TARGET frugal_pcre2)
  find_path(FRUGAL_PCRE2_INCLUDE pcre2.h)
  find_library(FRUGAL_PCRE2_LIB NAMES pcre2-8)
  if(FRUGAL_PCRE2_INCLUDE AND FRUGAL_PCRE2_LIB)
    add_library(frugal_pcre2 INTERFACE)
    target_include_directories(frugal_pcre2 INTERFACE ${FRUGAL_PCRE2_INCLUDE})
    target_link_libraries(frugal_pcre2 INTERFACE ${FRUGAL_PCRE2_LIB})
    target_compile_definitions(frugal_pcre2 INTERFACE PCRE2_CODE_UNIT_WIDTH=8)
  endif()
endif()
find_package(nlohmann_json 3 QUIET)
