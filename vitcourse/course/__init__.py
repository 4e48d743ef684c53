"""The course's own tooling: what the pages and exercises use besides the ViT library."""
