/* TPM 2.0 structures from an exported audit log: a quote's TPMS_ATTEST
 * and its TPMT_SIGNATURE, parsed by the offline verifier (byte 0 picks
 * which). */
#include "fuzz.h"
#include "verify.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct averify_attest a;
	struct averify_sig s;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		if (averify_parse_sig(data + 1, size - 1, &s) == 0)
			FUZZ_ASSERT(s.rlen >= 1 && s.rlen <= AVERIFY_ECC_MAX &&
			    s.slen >= 1 && s.slen <= AVERIFY_ECC_MAX);
	} else
		(void)averify_parse_attest(data + 1, size - 1, &a);
	return 0;
}
