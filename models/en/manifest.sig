{
  "algorithm": "ed25519",
  "public_key": "a5a307bc4e85b728563fcf121cc69456d8cf4ca205cfd5d52bd06ee8ef6386e5",
  "signature": "649979dd95e62c5007ceb4fcb98551b63cf7fa509e52b09baa8efb4f32158aa74b3038c4abed0934dcf6293695dcfbb7fa0e0eebed0baa0846be4eea501b0c0c"
}
