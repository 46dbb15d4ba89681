from facegender.cli import main

# Guarded: batch's worker processes start by spawn, which imports the parent's main module.
if __name__ == "__main__":
    main()
