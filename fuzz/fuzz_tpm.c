/* TPM 2.0 structures: a quote's TPMS_ATTEST and its TPMT_SIGNATURE, parsed
 * by the offline verifier from an exported audit log, and the PCR values a
 * signer's QUOTE returns, parsed by the broker (byte 0 picks which). */
#include <string.h>

#include "alog.h"
#include "fuzz.h"
#include "verify.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct averify_attest a;
	struct averify_sig s;
	struct json_object *vals = NULL;
	char sel[128];

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 1:
		if (averify_parse_sig(data + 1, size - 1, &s) == 0)
			FUZZ_ASSERT(s.rlen >= 1 && s.rlen <= AVERIFY_ECC_MAX &&
			    s.slen >= 1 && s.slen <= AVERIFY_ECC_MAX);
		break;
	case 2:
		if (alog_pcr_values(data + 1, size - 1, &vals, sel,
		    sizeof(sel)) == 0)
			FUZZ_ASSERT(vals != NULL && strlen(sel) < sizeof(sel));
		json_object_put(vals);
		break;
	default:
		(void)averify_parse_attest(data + 1, size - 1, &a);
		break;
	}
	return 0;
}
