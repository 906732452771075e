-- A proposal handed over as a deal made without the market (direct data onboarding; Curio's
-- DDO deals): it has no market deal ID, and the DealClient records its activation with NO_DEAL.
ALTER TABLE work ADD COLUMN direct INTEGER NOT NULL DEFAULT 0;
