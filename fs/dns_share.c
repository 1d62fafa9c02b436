/* The DNS cache that the handles of one libcurl client share. */
#include "dns_share.h"

#include <errno.h>

static void lock_data(CURL *handle, curl_lock_data data,
		      curl_lock_access access, void *userptr)
{
	struct dns_share *share = userptr;

	(void)handle;
	(void)access;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&share->locks[data]);
}

static void unlock_data(CURL *handle, curl_lock_data data, void *userptr)
{
	struct dns_share *share = userptr;

	(void)handle;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&share->locks[data]);
}

int dns_share_init(struct dns_share *share)
{
	share->share = curl_share_init();
	if (!share->share)
		return -ENOMEM;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&share->locks[i], NULL);
	if (curl_share_setopt(share->share, CURLSHOPT_LOCKFUNC, lock_data) ||
	    curl_share_setopt(share->share, CURLSHOPT_UNLOCKFUNC,
			      unlock_data) ||
	    curl_share_setopt(share->share, CURLSHOPT_USERDATA, share) ||
	    curl_share_setopt(share->share, CURLSHOPT_SHARE,
			      CURL_LOCK_DATA_DNS)) {
		dns_share_destroy(share);
		return -ENOMEM;
	}
	return 0;
}

void dns_share_destroy(struct dns_share *share)
{
	if (!share->share)
		return;
	curl_share_cleanup(share->share);
	share->share = NULL;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&share->locks[i]);
}
