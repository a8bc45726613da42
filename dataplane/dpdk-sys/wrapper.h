/* What vRouter uses of DPDK. The shim (shim.c) wraps the static-inline
 * functions bindgen cannot bind. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_dev.h>
#include <rte_bus.h>
#include <rte_memory.h>
#include <rte_bus_vdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include "shim.h"
