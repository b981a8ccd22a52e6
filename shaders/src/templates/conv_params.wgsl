// The conv params of an implicit-GEMM conv, after the matmul's (at 15 + 3 * batch):
// [C, H, W, OW, KH, KW, sh, sw, pt, pl, dh, dw].
struct ConvParams {
    ch: u32,
    h: i32,
    w: i32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: i32,
    sw: i32,
    pt: i32,
    pl: i32,
    dh: i32,
    dw: i32,
}

fn conv_params() -> ConvParams {
    let cp = 15u + 3u * params[3];
    var c: ConvParams;
    c.ch = params[cp];
    c.h = i32(params[cp + 1u]);
    c.w = i32(params[cp + 2u]);
    c.ow = params[cp + 3u];
    c.kh = params[cp + 4u];
    c.kw = params[cp + 5u];
    c.sh = i32(params[cp + 6u]);
    c.sw = i32(params[cp + 7u]);
    c.pt = i32(params[cp + 8u]);
    c.pl = i32(params[cp + 9u]);
    c.dh = i32(params[cp + 10u]);
    c.dw = i32(params[cp + 11u]);
    return c;
}
