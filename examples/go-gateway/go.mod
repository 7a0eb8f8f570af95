module tally.dev/go-gateway

go 1.19

require tally.dev/tally v0.0.0

replace tally.dev/tally => ../../bindings/go
