#ifndef VROUTER_DPDK_SHIM_H
#define VROUTER_DPDK_SHIM_H
#include <stdint.h>
struct rte_mbuf;
struct rte_mempool;

uint16_t vr_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t vr_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
void vr_pktmbuf_free(struct rte_mbuf *m);
struct rte_mbuf *vr_pktmbuf_alloc(struct rte_mempool *mp);
/* Buffer start, data offset, data length and segment count of an mbuf. */
void *vr_mbuf_buf_addr(const struct rte_mbuf *m);
uint16_t vr_mbuf_data_off(const struct rte_mbuf *m);
uint16_t vr_mbuf_data_len(const struct rte_mbuf *m);
uint16_t vr_mbuf_nb_segs(const struct rte_mbuf *m);
/* Makes m a single-segment packet of len bytes at data offset off. */
void vr_mbuf_set(struct rte_mbuf *m, uint16_t off, uint16_t len);
/* rte_eth_rx_burst, then for each received mbuf i: addr[i] = its data's
 * offset from `base` (buf_addr - base + data_off), or UINT64_MAX if it has
 * more than one segment, and len[i] = data_len. One call per burst instead
 * of four per packet. */
uint16_t vr_rx_burst_info(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n,
			  uintptr_t base, uint64_t *addr, uint16_t *len);
/* vr_mbuf_set on pkts[0..n] (off[i], len[i]), then rte_eth_tx_burst. */
uint16_t vr_tx_burst_set(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n,
			 const uint16_t *off, const uint16_t *len);
int vr_errno(void);
/* rte_lcore_id(): LCORE_ID_ANY (UINT32_MAX) on a thread EAL does not know. */
unsigned vr_lcore_id(void);
/* Calls cb(arg, mbuf) for every mbuf of a pktmbuf pool. */
unsigned vr_mempool_mbufs(struct rte_mempool *mp, void (*cb)(void *arg, struct rte_mbuf *m), void *arg);
#endif
