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
