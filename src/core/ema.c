// SPDX-License-Identifier: MIT
/* Exponential moving average. See core.h. */
#include "dwscale/core.h"

int dw_ema_init(dw_ema *e, double alpha)
{
	if (!(alpha > 0.0 && alpha <= 1.0))
		return DW_ELIMIT;
	e->alpha = alpha;
	e->value = 0.0;
	e->primed = false;
	return 0;
}

double dw_ema_update(dw_ema *e, double sample)
{
	if (!e->primed) {
		e->value = sample;
		e->primed = true;
	} else {
		e->value = e->alpha * sample + (1.0 - e->alpha) * e->value;
	}
	return e->value;
}

double dw_ema_value(const dw_ema *e)
{
	return e->primed ? e->value : 0.0;
}

void dw_ema_reset(dw_ema *e)
{
	e->value = 0.0;
	e->primed = false;
}
