# Shared compiler settings: every first-party target calls saga_configure_target().

function(saga_configure_target target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
  if(SAGA_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(SAGA_SANITIZE)
    # Undefined behaviour stops the test that meets it instead of only printing a line. The
    # library's assertions turn a read of an empty std::optional or a vector index out of range
    # into an abort, where without them it reads whatever memory is there.
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=undefined
                                             -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=undefined)
  endif()
endfunction()

# A service is a library of everything except main.cpp plus a thin executable.
function(saga_add_service name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name}Lib STATIC ${ARG_SOURCES})
  add_library(Saga::${name} ALIAS ${name}Lib)
  target_include_directories(${name}Lib PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(${name}Lib PUBLIC ${ARG_LIBS})
  saga_configure_target(${name}Lib)
  add_executable(${name} main.cpp)
  target_link_libraries(${name} PRIVATE ${name}Lib)
  saga_configure_target(${name})
endfunction()
