from ketch.cli.main import main

raise SystemExit(main())
