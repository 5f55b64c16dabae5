from simper.cli import main

raise SystemExit(main())
