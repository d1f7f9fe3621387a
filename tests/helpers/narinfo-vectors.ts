// Narinfo texts written by real Nix, shared by the tests that parse, format and sign them.

/**
 * docs/nix-protocol.md §3.3: Nix 2.8's `nix copy --to http://…?secret-key=…` output for an
 * input-addressed path (signed by the test key `test-cache-1` of docs/nix-protocol.md §12.2).
 */
export const INPUT_ADDRESSED_NARINFO = `StorePath: /nix/store/hx5chsx6691x69ldaiwc2c7rgbviyc7n-ia-out
URL: nar/13kvbmwxfd0k5ykry4bcx7544ylhs87lc0b6hh2mzs06wyrpyxgq.nar.xz
Compression: xz
FileHash: sha256:13kvbmwxfd0k5ykry4bcx7544ylhs87lc0b6hh2mzs06wyrpyxgq
FileSize: 212
NarHash: sha256:1l2ipyxh08xmncgjadq0g5nwbif0lmyg4khbdms3h4cjdzrwhnpl
NarSize: 216
References: 33zwxgfdx6cny1ixdh53am2qm4hxpf6f-refs.txt b59a4a3c5r11xknb413jqv64rzga2rmx-dir
Deriver: p92h32l8czl187xfm5pwc8939as56xji-ia-out.drv
Sig: test-cache-1:5plCiTapQZDLsOfyXjGDCnDKm++lmK1TFBkdnuJyc9+pQ7otjB5Na6/Tp8rkZhA2LjAjyglplwqo9ecBuE3XDw==
`;
