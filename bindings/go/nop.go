package tally

/*
#include "tally_go.h"
*/
import "C"

// cgoNop is an empty C call (BenchmarkEmptyCgoCall).
func cgoNop() { C.tgo_nop() }
