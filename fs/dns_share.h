/* A libcurl share of the DNS cache between the handles of one client, with
 * the locks that libcurl needs to use it from several threads. Nothing else
 * is shared: libcurl 7.88 lists its shared connection cache as unsafe
 * across threads, and shared TLS sessions race inside OpenSSL. */
#ifndef CSIPFS_DNS_SHARE_H
#define CSIPFS_DNS_SHARE_H

#include <curl/curl.h>
#include <pthread.h>

struct dns_share {
	CURLSH *share; /* for CURLOPT_SHARE */
	pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
};

/* Sets up share. Returns 0, or -ENOMEM with nothing to release. */
int dns_share_init(struct dns_share *share);

/* Releases share. Every handle that uses it must be cleaned up first. */
void dns_share_destroy(struct dns_share *share);

#endif
