"""Model providers behind one interface (`sgnb.lang.backends.base.Backend`)."""
