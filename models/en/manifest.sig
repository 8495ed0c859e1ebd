{
  "algorithm": "ed25519",
  "public_key": "a5a307bc4e85b728563fcf121cc69456d8cf4ca205cfd5d52bd06ee8ef6386e5",
  "signature": "71a844b127d7a3ac6bb58ad6d29fa1fc62ee84bed76fdc3355fa33c86cc32fefc969d2956fa3ababcb7436fba8ad6fcbb0023b4eae7883f67c34fcaddb9f630b"
}
