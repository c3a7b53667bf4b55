/* curl.c -- opens libcurl on first use and fills the table of src/http/curl.h. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#define HERSH_CURL_NO_NAMES
#include "base/error.h"
#include "hersh.h"
#include "http/curl.h"

hersh_curl_api hersh_curl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[256];

static void load(void) {
  void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(load_error, sizeof load_error, "cannot open libcurl: %s", dlerror());
    return;
  }
#define HERSH_CURL_RESOLVE(name)                                                                  \
  if (!load_error[0] && !(*(void **)&hersh_curl.name = dlsym(lib, #name)))                        \
    snprintf(load_error, sizeof load_error, "libcurl has no %s", #name);
  HERSH_CURL_FUNCTIONS(HERSH_CURL_RESOLVE)
#undef HERSH_CURL_RESOLVE
  /* The library stays open for the life of the process, as a linked one would. */
}

int hersh_curl_load(void) {
  pthread_once(&once, load);
  if (load_error[0]) return hersh_fail_with(HERSH_E_SYS, "%s", load_error);
  return HERSH_OK;
}
