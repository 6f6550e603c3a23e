"""Legal layers ("3+X"): versioned imports of the control lines and legal-use areas."""
