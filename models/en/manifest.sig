{
  "algorithm": "ed25519",
  "public_key": "a5a307bc4e85b728563fcf121cc69456d8cf4ca205cfd5d52bd06ee8ef6386e5",
  "signature": "d3669da67cb7596ff0fc3bdb5c4dcb16c5c15d3ca58abe03ff6ffa4d70f5f071c1eb9185bde2e27550316d8e93c2d28754ea8479c32ef62fab8a0f956f2b4003"
}
