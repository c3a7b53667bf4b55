/*
** curl.h -- libcurl, loaded when first needed. A program (hersh run) never makes an
** HTTP request, and libcurl with the TLS libraries it pulls in weighs about 3 MiB of
** resident memory, so it is opened with dlopen by the first HTTP client, not linked.
** Include this instead of <curl/curl.h>: the curl_* names below call through the
** table, and their types come from curl's own header.
*/
#ifndef HERSH_HTTP_CURL_H
#define HERSH_HTTP_CURL_H

#define CURL_DISABLE_TYPECHECK /* its checking macros would hide our names */
#include <curl/curl.h>

#define HERSH_CURL_FUNCTIONS(X)                                                                   \
  X(curl_global_init) X(curl_easy_init) X(curl_easy_cleanup) X(curl_easy_reset)                     \
  X(curl_easy_setopt) X(curl_easy_getinfo) X(curl_easy_strerror) X(curl_free) X(curl_multi_init)    \
  X(curl_easy_pause)                                                                                \
  X(curl_multi_add_handle) X(curl_multi_remove_handle) X(curl_multi_assign) X(curl_multi_cleanup)   \
  X(curl_multi_info_read) X(curl_multi_setopt) X(curl_multi_socket_action) X(curl_multi_strerror)   \
  X(curl_slist_append) X(curl_slist_free_all) X(curl_url) X(curl_url_cleanup) X(curl_url_get)       \
  X(curl_url_set) X(curl_url_strerror) X(curl_version_info)

#define HERSH_CURL_FIELD(name) __typeof__(name) *name;
typedef struct hersh_curl_api {
  HERSH_CURL_FUNCTIONS(HERSH_CURL_FIELD)
} hersh_curl_api;
#undef HERSH_CURL_FIELD

extern hersh_curl_api hersh_curl;

/* Opens libcurl once per process; HERSH_OK, or HERSH_E_SYS with the reason. */
int hersh_curl_load(void);

#ifndef HERSH_CURL_NO_NAMES /* curl.c fills the table by these names */
#undef curl_easy_setopt  /* curl.h's own argument-count checks */
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init hersh_curl.curl_global_init
#define curl_easy_init hersh_curl.curl_easy_init
#define curl_easy_cleanup hersh_curl.curl_easy_cleanup
#define curl_easy_reset hersh_curl.curl_easy_reset
#define curl_easy_setopt hersh_curl.curl_easy_setopt
#define curl_easy_getinfo hersh_curl.curl_easy_getinfo
#define curl_easy_pause hersh_curl.curl_easy_pause
#define curl_easy_strerror hersh_curl.curl_easy_strerror
#define curl_free hersh_curl.curl_free
#define curl_multi_init hersh_curl.curl_multi_init
#define curl_multi_add_handle hersh_curl.curl_multi_add_handle
#define curl_multi_remove_handle hersh_curl.curl_multi_remove_handle
#define curl_multi_assign hersh_curl.curl_multi_assign
#define curl_multi_cleanup hersh_curl.curl_multi_cleanup
#define curl_multi_info_read hersh_curl.curl_multi_info_read
#define curl_multi_setopt hersh_curl.curl_multi_setopt
#define curl_multi_socket_action hersh_curl.curl_multi_socket_action
#define curl_multi_strerror hersh_curl.curl_multi_strerror
#define curl_slist_append hersh_curl.curl_slist_append
#define curl_slist_free_all hersh_curl.curl_slist_free_all
#define curl_url hersh_curl.curl_url
#define curl_url_cleanup hersh_curl.curl_url_cleanup
#define curl_url_get hersh_curl.curl_url_get
#define curl_url_set hersh_curl.curl_url_set
#define curl_url_strerror hersh_curl.curl_url_strerror
#define curl_version_info hersh_curl.curl_version_info
#endif

#endif
