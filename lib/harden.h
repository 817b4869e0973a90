/* What every Threshold process holding a secret does first: no core file
 * and no ptrace attach by another process of the same uid (keys, PINs,
 * installation tokens and capabilities pass through their memory). */
#ifndef TH_HARDEN_H
#define TH_HARDEN_H

void	harden_process(void);

#endif
