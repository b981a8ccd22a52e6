// Exact unsigned integer power (square and multiply), saturating at the u32 maximum; appended to
// a module whose u32/u64 Pow uses it (exp2/log2 on CPU adapters is not exact enough).
fn pow_u(a: u32, b: u32) -> u32 {
    var r = 1u;
    var base = a;
    var e = b;
    loop {
        if (e == 0u) {
            break;
        }
        if ((e & 1u) == 1u) {
            if (base != 0u && r > 4294967295u / base) {
                return 4294967295u;
            }
            r = r * base;
        }
        e = e >> 1u;
        if (e != 0u) {
            if (base > 65535u) {
                return select(r, 4294967295u, r != 0u);
            }
            base = base * base;
        }
    }
    return r;
}
