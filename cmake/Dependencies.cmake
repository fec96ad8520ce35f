# Third-party libraries: libuv (pkg-config), libcurl (find_package, or pkg-config --static for
# fully static builds), llhttp (installed package, or built here from its C sources).
find_package(PkgConfig REQUIRED)

if(STACK_STATIC)
  pkg_check_modules(LIBUV REQUIRED libuv-static)
  add_library(stack_libuv INTERFACE)
  target_include_directories(stack_libuv INTERFACE ${LIBUV_STATIC_INCLUDE_DIRS})
  target_link_libraries(stack_libuv INTERFACE ${LIBUV_STATIC_LDFLAGS})
  pkg_check_modules(LIBCURL REQUIRED libcurl)
  add_library(stack_libcurl INTERFACE)
  target_include_directories(stack_libcurl INTERFACE ${LIBCURL_STATIC_INCLUDE_DIRS})
  target_compile_definitions(stack_libcurl INTERFACE CURL_STATICLIB)
  target_link_libraries(stack_libcurl INTERFACE ${LIBCURL_STATIC_LDFLAGS})
else()
  pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)
  add_library(stack_libuv INTERFACE)
  target_link_libraries(stack_libuv INTERFACE PkgConfig::LIBUV)
  find_package(CURL REQUIRED)
  add_library(stack_libcurl INTERFACE)
  target_link_libraries(stack_libcurl INTERFACE CURL::libcurl)
endif()

# llhttp: an explicit source dir wins; then an installed llhttp (CMake package); then the C
# sources Debian's node-llhttp ships.
add_library(stack_llhttp INTERFACE)
if(NOT LLHTTP_SOURCE_DIR)
  find_package(llhttp QUIET CONFIG)
endif()
if(NOT LLHTTP_SOURCE_DIR AND TARGET llhttp::llhttp_static)
  message(STATUS "llhttp: installed package (static)")
  target_link_libraries(stack_llhttp INTERFACE llhttp::llhttp_static)
elseif(NOT LLHTTP_SOURCE_DIR AND TARGET llhttp::llhttp)
  message(STATUS "llhttp: installed package")
  target_link_libraries(stack_llhttp INTERFACE llhttp::llhttp)
else()
  if(NOT LLHTTP_SOURCE_DIR)
    set(LLHTTP_SOURCE_DIR /usr/share/llhttp)
  endif()
  if(NOT LLHTTP_INCLUDE_DIR)
    find_path(STACK_LLHTTP_HEADER_DIR llhttp.h
              PATHS ${LLHTTP_SOURCE_DIR} ${LLHTTP_SOURCE_DIR}/../include/llhttp
                    ${LLHTTP_SOURCE_DIR}/../include /usr/share/include/llhttp
              NO_DEFAULT_PATH)
    set(LLHTTP_INCLUDE_DIR ${STACK_LLHTTP_HEADER_DIR})
  endif()
  foreach(f api.c http.c llhttp.c)
    if(NOT EXISTS ${LLHTTP_SOURCE_DIR}/${f})
      message(FATAL_ERROR "llhttp: ${LLHTTP_SOURCE_DIR}/${f} not found; install node-llhttp "
                          "(Debian), an llhttp package, or set LLHTTP_SOURCE_DIR")
    endif()
  endforeach()
  if(NOT LLHTTP_INCLUDE_DIR)
    message(FATAL_ERROR "llhttp: llhttp.h not found; set LLHTTP_INCLUDE_DIR")
  endif()
  message(STATUS "llhttp: building from ${LLHTTP_SOURCE_DIR} (header in ${LLHTTP_INCLUDE_DIR})")
  add_library(llhttp_vendored STATIC ${LLHTTP_SOURCE_DIR}/api.c ${LLHTTP_SOURCE_DIR}/http.c
                                     ${LLHTTP_SOURCE_DIR}/llhttp.c)
  target_include_directories(llhttp_vendored SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
  # Generated C: not ours to warn about.
  target_compile_options(llhttp_vendored PRIVATE -w)
  set_target_properties(llhttp_vendored PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_link_libraries(stack_llhttp INTERFACE llhttp_vendored)
endif()
