/* Out-of-line copies of DPDK's static-inline fast-path functions, so Rust
 * can call them. Each is a one-line forward; the compiler inlines DPDK's
 * body here. */
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#include "shim.h"

uint16_t vr_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t vr_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

void vr_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

unsigned vr_lcore_id(void) { return rte_lcore_id(); }

struct rte_mbuf *vr_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

void *vr_mbuf_buf_addr(const struct rte_mbuf *m) { return m->buf_addr; }
uint16_t vr_mbuf_data_off(const struct rte_mbuf *m) { return m->data_off; }
uint16_t vr_mbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }
uint16_t vr_mbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }

static inline void mbuf_set(struct rte_mbuf *m, uint16_t off, uint16_t len)
{
	m->data_off = off;
	m->data_len = len;
	m->pkt_len = len;
	m->nb_segs = 1;
	m->next = NULL;
	m->ol_flags = 0;
}

void vr_mbuf_set(struct rte_mbuf *m, uint16_t off, uint16_t len) { mbuf_set(m, off, len); }

uint16_t vr_rx_burst_info(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n,
			  uintptr_t base, uint64_t *addr, uint16_t *len)
{
	uint16_t got = rte_eth_rx_burst(port, queue, pkts, n);
	for (uint16_t i = 0; i < got; i++) {
		const struct rte_mbuf *m = pkts[i];
		addr[i] = m->nb_segs == 1 ? (uint64_t)((uintptr_t)m->buf_addr - base) + m->data_off
					  : UINT64_MAX;
		len[i] = m->data_len;
	}
	return got;
}

uint16_t vr_tx_burst_set(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n,
			 const uint16_t *off, const uint16_t *len)
{
	for (uint16_t i = 0; i < n; i++)
		mbuf_set(pkts[i], off[i], len[i]);
	return rte_eth_tx_burst(port, queue, pkts, n);
}

int vr_errno(void) { return rte_errno; }

struct iter_ctx {
	void (*cb)(void *arg, struct rte_mbuf *m);
	void *arg;
};

static void obj_cb(struct rte_mempool *mp, void *opaque, void *obj, unsigned idx)
{
	(void)mp;
	(void)idx;
	struct iter_ctx *c = opaque;
	c->cb(c->arg, obj);
}

unsigned vr_mempool_mbufs(struct rte_mempool *mp, void (*cb)(void *arg, struct rte_mbuf *m), void *arg)
{
	struct iter_ctx c = { cb, arg };
	return rte_mempool_obj_iter(mp, obj_cb, &c);
}
