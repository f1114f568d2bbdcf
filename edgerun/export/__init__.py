"""Hand-offs to serving systems: Triton model repositories (`triton`)."""
