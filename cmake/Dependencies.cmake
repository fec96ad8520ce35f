# Third-party libraries: libuv (pkg-config), libcurl (find_package, or pkg-config --static for
# fully static builds), c-ares (pkg-config; the sidecar resolves replicas with it), utf8proc
# (pkg-config; hello's Unicode case mapping; Debian's libutf8proc-dev has the static library
# too), libsodium (pkg-config; accounts), llhttp (installed package, or built here from its C
# sources), and for the store clients (core_stores) hiredis and libpq (pkg-config; static: see
# stack_libpq below).
find_package(PkgConfig REQUIRED)

# stack_<name>: an INTERFACE target for a pkg-config module. Static builds link its --static
# flags (with -static every -l finds the .a) and get `define` (the library's "I am linked
# statically" macro); the others link pkg-config's imported target.
function(stack_pkg_library name prefix module static_module define)
  add_library(stack_${name} INTERFACE)
  if(STACK_STATIC)
    pkg_check_modules(${prefix} REQUIRED ${static_module})
    target_include_directories(stack_${name} INTERFACE ${${prefix}_STATIC_INCLUDE_DIRS})
    if(define)
      target_compile_definitions(stack_${name} INTERFACE ${define})
    endif()
    target_link_libraries(stack_${name} INTERFACE ${${prefix}_STATIC_LDFLAGS})
  else()
    pkg_check_modules(${prefix} REQUIRED IMPORTED_TARGET ${module})
    target_link_libraries(stack_${name} INTERFACE PkgConfig::${prefix})
  endif()
endfunction()

stack_pkg_library(libuv LIBUV libuv libuv-static "")
stack_pkg_library(cares CARES libcares libcares CARES_STATICLIB)
stack_pkg_library(utf8proc UTF8PROC libutf8proc libutf8proc UTF8PROC_STATIC)
# libsodium (accounts: argon2id password hashing, Ed25519 signatures, base64url); Debian's
# libsodium-dev has libsodium.a too. SODIUM_STATIC: no dllimport decoration (a no-op on Linux).
stack_pkg_library(sodium SODIUM libsodium libsodium SODIUM_STATIC)
if(STACK_STATIC)
  stack_pkg_library(libcurl LIBCURL libcurl libcurl CURL_STATICLIB)
else()
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

# Store clients (core_stores only: hello and sidecar never link these).
# hiredis: Debian's libhiredis-dev (0.14) has both libhiredis.so and libhiredis.a.
# libpq: normally the shared library. A fully static libpq on Debian 12 needs more than
# `pkg-config --static libpq` says (-lpq -lpgcommon -lpgport -lgssapi_krb5 -lm -lldap -lssl
# -lcrypto): libpgcommon.a and libpgport.a are not in libpq-dev but in postgresql-server-dev-15
# (/usr/lib/postgresql/15/lib, found with `pg_config --pkglibdir`), and Debian ships no static
# GSSAPI (Kerberos) at all, while libldap.a would pull SASL and GnuTLS archives. libpq.a
# references gss_* and ldap_* unconditionally, so core/pq_static_stubs.c supplies failing
# stand-ins (no GSSAPI auth, no LDAP service lookups in the static images; pg_client disables
# GSS encryption anyway).
if(STACK_STATIC)
  pkg_check_modules(HIREDIS REQUIRED hiredis)
  add_library(stack_hiredis INTERFACE)
  target_include_directories(stack_hiredis INTERFACE ${HIREDIS_STATIC_INCLUDE_DIRS})
  target_link_libraries(stack_hiredis INTERFACE ${HIREDIS_STATIC_LDFLAGS})

  pkg_check_modules(LIBPQ REQUIRED libpq)
  find_program(STACK_PG_CONFIG pg_config)
  set(stack_pg_pkglibdir "")
  if(STACK_PG_CONFIG)
    execute_process(COMMAND ${STACK_PG_CONFIG} --pkglibdir OUTPUT_VARIABLE stack_pg_pkglibdir
                    OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  file(GLOB stack_pg_server_libdirs /usr/lib/postgresql/*/lib)
  find_library(STACK_PGCOMMON_A libpgcommon.a HINTS ${stack_pg_pkglibdir} ${stack_pg_server_libdirs})
  find_library(STACK_PGPORT_A libpgport.a HINTS ${stack_pg_pkglibdir} ${stack_pg_server_libdirs})
  find_library(STACK_PQ_A libpq.a HINTS ${LIBPQ_LIBRARY_DIRS})
  if(NOT STACK_PGCOMMON_A OR NOT STACK_PGPORT_A OR NOT STACK_PQ_A)
    message(FATAL_ERROR "static libpq: need libpq.a (libpq-dev) and libpgcommon.a + libpgport.a "
                        "(Debian: postgresql-server-dev-15)")
  endif()
  pkg_check_modules(OPENSSL_STATIC REQUIRED libssl libcrypto)
  add_library(stack_pq_stubs STATIC ${CMAKE_CURRENT_LIST_DIR}/../core/pq_static_stubs.c)
  add_library(stack_libpq INTERFACE)
  target_include_directories(stack_libpq INTERFACE ${LIBPQ_INCLUDE_DIRS})
  target_link_libraries(stack_libpq INTERFACE ${STACK_PQ_A} ${STACK_PGCOMMON_A} ${STACK_PGPORT_A}
                        stack_pq_stubs ${OPENSSL_STATIC_STATIC_LDFLAGS} m)
else()
  pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
  add_library(stack_hiredis INTERFACE)
  target_link_libraries(stack_hiredis INTERFACE PkgConfig::HIREDIS)
  pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
  add_library(stack_libpq INTERFACE)
  target_link_libraries(stack_libpq INTERFACE PkgConfig::LIBPQ)
endif()
