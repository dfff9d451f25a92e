/* Listening sockets: address parsing and the SO_REUSEPORT sockets shared
 * by the worker processes of `serve --processes N`. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/http_int.h"

qtsp_status qtsp_http_listen_shared(const char *addr, unsigned n, int *fds, unsigned *port)
{
    return http_listen_bind(addr, n, 1, fds, port);
}

qtsp_status http_listen_bind(const char *addr, unsigned n, int reuseport, int *fds, unsigned *port)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int v6 = 0;
    TRY(http_parse_listen(addr, &ss, &sslen, &v6));
    ENSURE(n >= 1 && n <= 1024, QTSP_ERR_INVALID, "1..1024 listening sockets, not %u", n);
    qtsp_status rc = QTSP_OK;
    unsigned made = 0;
    int fd = -1, one = 1;
    for (; made < n; made++) {
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ENSURE_OUT(fd >= 0, QTSP_ERR_IO, "socket: %s", strerror(errno));
        ENSURE_OUT(
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
                (!reuseport || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0),
            QTSP_ERR_IO, "setsockopt SO_REUSEPORT: %s", strerror(errno));
        if (v6)
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        ENSURE_OUT(bind(fd, (struct sockaddr *)&ss, sslen) == 0 && listen(fd, 1024) == 0,
                   QTSP_ERR_IO, "cannot listen on %s: %s", addr, strerror(errno));
        if (made == 0) { /* port 0: the others take the port the kernel picked */
            struct sockaddr_storage got;
            socklen_t gl = sizeof got;
            ENSURE_OUT(getsockname(fd, (struct sockaddr *)&got, &gl) == 0, QTSP_ERR_IO,
                       "getsockname: %s", strerror(errno));
            in_port_t p = got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                    : ((struct sockaddr_in *)&got)->sin_port;
            if (ss.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&ss)->sin6_port = p;
            else
                ((struct sockaddr_in *)&ss)->sin_port = p;
            if (port)
                *port = ntohs(p);
        }
        fds[made] = fd;
        fd = -1;
    }
    return QTSP_OK;
out:
    if (fd >= 0)
        close(fd);
    for (unsigned i = 0; i < made; i++)
        close(fds[i]);
    return rc;
}

qtsp_status http_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len, int *v6)
{
    ENSURE(s != NULL && *s, QTSP_ERR_INVALID, "empty listen address");
    char host[64];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        ENSURE(close && close[1] == ':', QTSP_ERR_INVALID, "listen address '%s' is not [IPv6]:port",
               s);
        size_t hl = (size_t)(close - s - 1);
        ENSURE(hl < sizeof host, QTSP_ERR_INVALID, "listen address '%s' too long", s);
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        port = close + 2;
        *v6 = 1;
    } else {
        const char *colon = strrchr(s, ':');
        ENSURE(colon, QTSP_ERR_INVALID, "listen address '%s' has no port", s);
        size_t hl = (size_t)(colon - s);
        ENSURE(hl < sizeof host, QTSP_ERR_INVALID, "listen address '%s' too long", s);
        memcpy(host, s, hl);
        host[hl] = '\0';
        port = colon + 1;
        *v6 = 0;
    }
    char *end = NULL;
    errno = 0;
    long p = strtol(port, &end, 10);
    ENSURE(*port && !errno && end && *end == '\0' && p >= 0 && p <= 65535, QTSP_ERR_INVALID,
           "listen address '%s' has a bad port", s);
    memset(ss, 0, sizeof *ss);
    if (*v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)p);
        ENSURE(inet_pton(AF_INET6, host, &a->sin6_addr) == 1, QTSP_ERR_INVALID,
               "listen address '%s': bad IPv6 address", s);
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)p);
        ENSURE(inet_pton(AF_INET, host, &a->sin_addr) == 1, QTSP_ERR_INVALID,
               "listen address '%s': bad IPv4 address", s);
        *len = sizeof *a;
    }
    return QTSP_OK;
}
