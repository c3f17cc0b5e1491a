module netpoll-bench/gonet

// Old on purpose: any Go since 1.16 (net.ErrClosed) builds it; the bench tool sets
// GOTOOLCHAIN=local so no newer toolchain is ever fetched.
go 1.16
