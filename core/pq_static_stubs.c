/* GSSAPI and LDAP stand-ins for a fully static libpq (STACK_STATIC builds only).
 *
 * Why: Debian 12's libpq.a is built with GSSAPI (Kerberos) and LDAP support, and its objects
 * reference gss_* and ldap_* functions unconditionally, but Debian ships no static
 * libgssapi_krb5 (and libldap.a would drag in SASL and GnuTLS archives). The stack uses
 * neither: password (SCRAM) authentication over TCP, no "ldap://" service lookups. These
 * stand-ins make every GSSAPI call fail the way a missing credential does and ldap_init()
 * return NULL, so libpq reports a clean error ("GSSAPI is not available") if a server ever
 * asks for GSSAPI, and pg_client disables GSS encryption (gssencmode=disable) so no attempt
 * is made. The prototypes are written out here (no Kerberos or LDAP headers needed); the
 * types match the ABI (OM_uint32 is 32 bits, gss_buffer_desc is {size_t, void*}).
 */
#include <stddef.h>
#include <stdint.h>

typedef uint32_t om_uint32;
typedef struct {
  size_t length;
  void* value;
} stub_gss_buffer;

#define STUB_GSS_S_FAILURE (13u << 16) /* GSS_S_FAILURE: unspecified failure */

static char stub_gss_message[] = "GSSAPI is not available in this static build";

void* GSS_C_NT_HOSTBASED_SERVICE = NULL;

static om_uint32 stub_gss_fail(om_uint32* minor) {
  if (minor != NULL) *minor = 0;
  return STUB_GSS_S_FAILURE;
}

om_uint32 gss_acquire_cred(om_uint32* minor, void* a, om_uint32 b, void* c, int d, void** e,
                           void** f, om_uint32* g) {
  (void)a, (void)b, (void)c, (void)d, (void)f, (void)g;
  if (e != NULL) *e = NULL;
  return stub_gss_fail(minor);
}
om_uint32 gss_delete_sec_context(om_uint32* minor, void** ctx, void* out) {
  (void)out;
  if (ctx != NULL) *ctx = NULL;
  if (minor != NULL) *minor = 0;
  return 0;
}
om_uint32 gss_display_status(om_uint32* minor, om_uint32 status, int type, void* mech,
                             om_uint32* message_context, stub_gss_buffer* text) {
  (void)status, (void)type, (void)mech;
  if (minor != NULL) *minor = 0;
  if (message_context != NULL) *message_context = 0;
  if (text != NULL) {
    text->length = sizeof stub_gss_message - 1;
    text->value = stub_gss_message;
  }
  return 0;
}
om_uint32 gss_import_name(om_uint32* minor, void* name, void* type, void** out) {
  (void)name, (void)type;
  if (out != NULL) *out = NULL;
  return stub_gss_fail(minor);
}
om_uint32 gss_init_sec_context(om_uint32* minor, void* cred, void** ctx, void* target, void* mech,
                               om_uint32 flags, om_uint32 time, void* bindings, void* input,
                               void** actual_mech, stub_gss_buffer* output, om_uint32* ret_flags,
                               om_uint32* time_rec) {
  (void)cred, (void)ctx, (void)target, (void)mech, (void)flags, (void)time, (void)bindings;
  (void)input, (void)actual_mech, (void)ret_flags, (void)time_rec;
  if (output != NULL) {
    output->length = 0;
    output->value = NULL;
  }
  return stub_gss_fail(minor);
}
om_uint32 gss_release_buffer(om_uint32* minor, stub_gss_buffer* buffer) {
  if (minor != NULL) *minor = 0;
  if (buffer != NULL) { /* never allocated by the stand-ins */
    buffer->length = 0;
    buffer->value = NULL;
  }
  return 0;
}
om_uint32 gss_release_cred(om_uint32* minor, void** cred) {
  if (cred != NULL) *cred = NULL;
  if (minor != NULL) *minor = 0;
  return 0;
}
om_uint32 gss_release_name(om_uint32* minor, void** name) {
  if (name != NULL) *name = NULL;
  if (minor != NULL) *minor = 0;
  return 0;
}
om_uint32 gss_unwrap(om_uint32* minor, void* ctx, void* in, stub_gss_buffer* out, int* conf,
                     void* qop) {
  (void)ctx, (void)in, (void)conf, (void)qop;
  if (out != NULL) {
    out->length = 0;
    out->value = NULL;
  }
  return stub_gss_fail(minor);
}
om_uint32 gss_wrap(om_uint32* minor, void* ctx, int conf_req, om_uint32 qop, void* in, int* conf,
                   stub_gss_buffer* out) {
  (void)ctx, (void)conf_req, (void)qop, (void)in, (void)conf;
  if (out != NULL) {
    out->length = 0;
    out->value = NULL;
  }
  return stub_gss_fail(minor);
}
om_uint32 gss_wrap_size_limit(om_uint32* minor, void* ctx, int conf_req, om_uint32 qop,
                              om_uint32 req_output_size, om_uint32* max_input_size) {
  (void)ctx, (void)conf_req, (void)qop, (void)req_output_size;
  if (max_input_size != NULL) *max_input_size = 0;
  return stub_gss_fail(minor);
}

/* LDAP: only reached for "ldap://" lines in a pg_service.conf; ldap_init() failing ends it. */
#define STUB_LDAP_OTHER 0x50
void* ldap_init(const char* host, int port) {
  (void)host, (void)port;
  return NULL;
}
char* ldap_err2string(int err) {
  (void)err;
  static char msg[] = "LDAP is not available in this static build";
  return msg;
}
int ldap_set_option(void* ld, int option, const void* value) {
  (void)ld, (void)option, (void)value;
  return -1;
}
int ldap_simple_bind(void* ld, const char* who, const char* passwd) {
  (void)ld, (void)who, (void)passwd;
  return -1;
}
int ldap_result(void* ld, int msgid, int all, void* timeout, void** result) {
  (void)ld, (void)msgid, (void)all, (void)timeout;
  if (result != NULL) *result = NULL;
  return -1;
}
int ldap_search_st(void* ld, const char* base, int scope, const char* filter, char** attrs,
                   int attrsonly, void* timeout, void** result) {
  (void)ld, (void)base, (void)scope, (void)filter, (void)attrs, (void)attrsonly, (void)timeout;
  if (result != NULL) *result = NULL;
  return STUB_LDAP_OTHER;
}
int ldap_count_entries(void* ld, void* result) {
  (void)ld, (void)result;
  return 0;
}
void* ldap_first_entry(void* ld, void* result) {
  (void)ld, (void)result;
  return NULL;
}
void** ldap_get_values_len(void* ld, void* entry, const char* attr) {
  (void)ld, (void)entry, (void)attr;
  return NULL;
}
void ldap_value_free_len(void** values) {
  (void)values;
}
int ldap_msgfree(void* msg) {
  (void)msg;
  return 0;
}
int ldap_unbind(void* ld) {
  (void)ld;
  return 0;
}
