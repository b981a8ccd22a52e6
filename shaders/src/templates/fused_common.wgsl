// Reads of a fused kernel's external inputs. The kernel's index space (its output shape) is
// described at params[EV..] (the `evb` layout); each general read has its view block (the `vb`
// layout) at its slot `s` (`EV_READ..`).
fn ev_off(i: u32, s: u32) -> u32 {
    let rank = params[EV + EVB_RANK];
    var rem = i;
    var off = i32(params[s + vb_offset(rank)]);
    for (var d = i32(rank) - 1; d >= 0; d = d - 1) {
        let dim = params[EV + EVB_DIMS + u32(d)];
        let q = ev_div(rem, dim);
        off = off + i32(rem - q * dim) * bitcast<i32>(params[s + VB_STRIDES + u32(d)]);
        rem = q;
    }
    return u32(off);
}
