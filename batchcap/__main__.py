from batchcap.cli import main

raise SystemExit(main())
